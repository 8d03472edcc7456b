"""``daprlite list`` and ``daprlite stop``: the sidecars running on this machine.

Where it sits: beside the sidecars, never inside one. Both commands read the
run folder (:mod:`daprlite.components.nameresolution.runfolder`), in which
every running sidecar records its app id, ports and the pid of its
``daprlite run`` process; records of dead processes are pruned on the way.
``stop`` sends SIGTERM to that process, which stops its app and then its
sidecar, and waits until it has gone; one that outlives the wait is killed,
together with its app.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from daprlite.cli.run import status
from daprlite.cli.runfile import RunFileError, load, resolve_path
from daprlite.components.nameresolution import runfolder
from daprlite.components.nameresolution.runfolder import Instance

STOP_WAIT_SECONDS = 10.0
COLUMNS = ("APP ID", "HTTP PORT", "GRPC PORT", "APP PORT", "PID", "AGE", "COMMAND")


def human_age(seconds: float) -> str:
    """``12s``, ``3m``, ``2h``, ``4d``: the largest whole unit."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _row(inst: Instance, now: float) -> tuple[str, ...]:
    return (
        inst.app_id,
        str(inst.http_port),
        str(inst.grpc_port),
        str(inst.app_port or ""),
        str(inst.pid),
        human_age(now - inst.started_at),
        inst.command,
    )


def format_table(instances: Sequence[Instance], now: float) -> str:
    rows = [COLUMNS, *(_row(i, now) for i in instances)]
    widths = [max(len(r[c]) for r in rows) for c in range(len(COLUMNS) - 1)]
    lines = []
    for r in rows:
        cells = [cell.ljust(w) for cell, w in zip(r, widths, strict=False)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)


def as_json(inst: Instance, now: float) -> dict[str, object]:
    """One sidecar with ``dapr list -o json``'s key names where Dapr has one."""
    created = datetime.datetime.fromtimestamp(inst.started_at).astimezone()
    return {
        "appId": inst.app_id,
        "httpPort": inst.http_port,
        "grpcPort": inst.grpc_port,
        "internalPort": inst.internal_port,
        "appPort": inst.app_port or 0,
        "appProtocol": inst.app_protocol,
        "command": inst.command,
        "age": human_age(now - inst.started_at),
        "created": created.isoformat(timespec="seconds"),
        "daprdPid": inst.pid,
        "cliPid": inst.pid,  # the sidecar runs inside the `daprlite run` process
        "appPid": inst.app_pid or 0,
        "runTemplatePath": inst.run_file,
        "appDirPath": inst.app_dir,
        "namespace": inst.namespace,
    }


def list_command(output: str) -> int:
    instances = runfolder.live_instances()
    now = time.time()
    if output == "json":
        text = json.dumps([as_json(i, now) for i in instances], indent=2)
    elif instances:
        text = format_table(instances, now)
    else:
        text = "No daprlite sidecars are running."
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # `daprlite list | head`: the reader has gone; say nothing more, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _running(pid: int) -> bool:
    """Alive and not a zombie (a stopped child its parent has not reaped yet)."""
    if not runfolder.pid_alive(pid):
        return False
    fields = _proc_stat(pid)
    return fields is None or fields[0] not in ("Z", "X")  # no /proc: trust the signal check


def _targets(app_ids: Sequence[str], run_file: str | None) -> tuple[list[Instance], str] | None:
    """The live sidecars to stop and a description of the match; None after an error."""
    wanted = {a.strip() for text in app_ids for a in text.split(",") if a.strip()}
    path_text = ""
    if run_file is not None:
        path = resolve_path(run_file)
        try:
            spec = load(path, check_paths=False)
        except RunFileError as exc:
            status(f"❌  {exc}")
            return None
        path_text = str(path)
        wanted |= {a.app_id for a in spec.apps}
    instances = runfolder.live_instances()
    found = [i for i in instances if i.app_id in wanted or (path_text and i.run_file == path_text)]
    if run_file is None and found:
        # Some matched: stop those, and say which ids did not.
        for app_id in sorted(wanted - {i.app_id for i in found}):
            status(f"⚠️  No running sidecar has app id {app_id!r}")
    what = f"the run file {path_text}" if path_text else "app id " + ", ".join(sorted(wanted))
    return found, what


def stop_command(app_ids: Sequence[str], run_file: str | None) -> int:
    targets = _targets(app_ids, run_file)
    if targets is None:
        return 1
    found, what = targets
    if not found:
        status(f"❌  No running daprlite sidecar matches {what}.")
        return 1
    for inst in found:
        status(f"ℹ️  Stopping {inst.app_id!r} (pid {inst.pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(inst.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    waiting = list(found)
    while waiting and time.monotonic() < deadline:
        time.sleep(0.05)
        waiting = [i for i in waiting if _running(i.pid)]
    for inst in found:
        if inst in waiting:
            status(
                f"⚠️  {inst.app_id!r} (pid {inst.pid}) did not exit within "
                f"{STOP_WAIT_SECONDS:.0f}s; killed it"
            )
            _kill(inst)
        else:
            status(f"✅  App {inst.app_id!r} stopped successfully")
    runfolder.live_instances()  # prunes the records of the processes just killed
    return 0


def _kill(inst: Instance) -> None:
    # The app outlives a killed `daprlite run`: take it too, while it is still that
    # process's child (so a reused pid is never hit).
    app_pid = inst.app_pid if inst.app_pid and _parent(inst.app_pid) == inst.pid else None
    for pid in (inst.pid, app_pid):
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), if readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _parent(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[1]) if fields else None
