"""The run folder: one JSON file per running sidecar on this machine.

DESIGN.md, D3: on a laptop, name resolution is a folder
(``$DAPRLITE_HOME/run``, by default ``~/.daprlite/run``) in which every
running sidecar records its app id, host and ports, and removes its record on
exit. The standalone resolver reads it to find a callee; ``daprlite list`` and
``daprlite stop`` read it to show and stop running sidecars.

A sidecar that crashed leaves its file behind. Readers therefore check that
the recorded process is still alive and is the same process (a reused pid
started after the record was written) before trusting a record, and delete
records that fail the check. Files are written atomically (temporary file,
then rename), so a reader never sees half a record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from daprlite.config.options import daprlite_home

log = logging.getLogger("daprlite.nameresolution")

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Instance:
    """One running sidecar, as recorded in the run folder."""

    app_id: str
    namespace: str
    host: str
    http_port: int
    grpc_port: int
    internal_port: int
    pid: int  # the process hosting the sidecar (the `daprlite run` process)
    started_at: float  # epoch seconds
    app_port: int | None = None
    app_protocol: str = "http"
    app_pid: int | None = None
    command: str = ""  # the app command line, for `daprlite list`
    run_file: str = ""  # absolute path of the multi-app run file that started it
    app_dir: str = ""
    proxy_port: int = 0  # the mTLS gRPC proxy listener (0: mTLS off)


def default_folder() -> Path:
    return daprlite_home() / "run"


def _record_name(instance: Instance) -> str:
    return f"{instance.app_id}.{instance.pid}.json"


def register(instance: Instance, folder: Path | None = None) -> Path:
    """Write (or rewrite) the record of ``instance``; returns the file's path."""
    folder = folder or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _record_name(instance)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    payload = {"version": FORMAT_VERSION, **asdict(instance)}
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)
    return path


def update(path: Path, instance: Instance, **changes: object) -> Instance:
    """Rewrite the record at ``path`` with some fields changed; returns the new instance."""
    new = replace(instance, **changes)  # type: ignore[arg-type]
    register(new, path.parent)
    return new


def unregister(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def process_start_time(pid: int) -> float | None:
    """Epoch seconds at which ``pid`` started (Linux ``/proc``); None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    boot = _boot_time()
    if boot is None:
        return None
    # The command name (field 2) may hold spaces; fields after it are plain.
    rest = stat.rsplit(")", 1)[1].split()
    ticks = int(rest[19])  # field 22: start time in clock ticks after boot
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def is_live(instance: Instance) -> bool:
    """The recorded process runs, and is not a newer process that reused the pid."""
    if not pid_alive(instance.pid):
        return False
    started = process_start_time(instance.pid)
    # /proc start times have a resolution of one clock tick and btime of one second.
    return started is None or started <= instance.started_at + 2.0


def _parse(path: Path) -> Instance | None:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
        return None
    names = {f.name for f in fields(Instance)}
    try:
        return Instance(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        return None


def live_instances(folder: Path | None = None, prune: bool = True) -> list[Instance]:
    """Every live sidecar recorded in the folder, oldest first.

    Records of dead processes are deleted when ``prune`` is true; unreadable
    files (another writer's temporary file, a foreign file) are skipped.
    """
    folder = folder or default_folder()
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return []
    out: list[Instance] = []
    for path in paths:
        inst = _parse(path)
        if inst is None:
            continue
        if is_live(inst):
            out.append(inst)
        elif prune:
            log.debug("removing the stale run record %s (pid %d is gone)", path.name, inst.pid)
            unregister(path)
    out.sort(key=lambda i: i.started_at)
    return out


def now() -> float:
    return time.time()
