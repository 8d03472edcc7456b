"""``daprlite run -f``: one ``daprlite run`` child per app of a multi-app run file.

Where it sits: above the sidecar. The run file is checked first
(:mod:`daprlite.cli.runfile`), so a bad file starts nothing. Each app then runs
as ``python -m daprlite run <flags> -- <command>``: a complete sidecar plus its
app, in ``appDirPath``, in a process group of its own, with
``DAPRLITE_RUN_FILE`` set so that its run-folder record names the run file
(``daprlite list``, ``daprlite stop -f``). The sidecars find each other through
the run folder like any others.

Every line a child prints is shown as ``== APP - <appID> == <line>``. A child
is one process holding both the sidecar and the app, so its lines cannot be
told apart: they go to the console when ``appLogDestination`` or
``daprdLogDestination`` includes the console, and to
``{appDirPath}/.dapr/logs/<appID>_<timestamp>.log`` when either includes a
file (by default both, as Dapr's defaults are ``fileAndConsole`` and ``file``).

Stopping: SIGINT or SIGTERM sends SIGTERM to every child, which stops its app
and its sidecar within their grace periods; children still running after that
are killed with their process groups. A second signal kills at once. This
process exits when every child has exited: 0 when all exited with 0, else 1.
A child that fails is reported and the others keep running, as ``dapr run -f``
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import TextIO

from daprlite.cli.run import default_resources_path, status
from daprlite.cli.runfile import AppSpec, RunFile

PREFIX = "== APP - {} == "
# A child first gives its app the grace period (5 s by default), then drains its
# sidecar for up to as long again; after that it is killed.
CHILD_STOP_SECONDS = 12.0
# After a child exits, a grandchild that kept its output pipe open must not hold us up.
OUTPUT_DRAIN_SECONDS = 2.0


def child_argv(app: AppSpec) -> list[str]:
    """``python -m daprlite run`` with the flags that mean what the run file says."""
    argv = [sys.executable, "-m", "daprlite", "run", "--app-id", app.app_id]
    pairs: list[tuple[str, object | None]] = [
        ("--app-port", app.app_port),
        ("--app-protocol", app.app_protocol),
        ("--app-channel-address", app.app_channel_address),
        ("--dapr-http-port", app.http_port),
        ("--dapr-grpc-port", app.grpc_port),
        ("--dapr-internal-grpc-port", app.internal_port),
        ("--config", app.config_file),
        ("--log-level", app.log_level),
        ("--app-max-concurrency", app.app_max_concurrency),
        ("--max-body-size", app.max_body_size),
        ("--dapr-listen-addresses", app.listen_addresses),
        ("--app-health-check-path", app.app_health_check_path),
        ("--app-health-probe-interval", app.app_health_probe_interval),
        ("--app-health-probe-timeout", app.app_health_probe_timeout),
        ("--app-health-threshold", app.app_health_threshold),
    ]
    for path in app.resources_paths or (default_resources_path(),):
        argv += ["--resources-path", str(path)]
    for flag, value in pairs:
        if value is not None:
            argv += [flag, str(value)]
    if app.enable_api_logging:
        argv.append("--enable-api-logging")
    if app.enable_app_health_check:
        argv.append("--enable-app-health-check")
    if app.command:
        argv += ["--", *app.command]
    return argv


def child_env(app: AppSpec, run_file: str) -> dict[str, str]:
    env = dict(os.environ)
    if env.pop("DAPRLITE_GRPC_FORK_SUPPORT_SET", None):
        # Our own gRPC setting (see daprlite.cli); the child decides afresh.
        env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    env.update(app.env)
    env["DAPRLITE_RUN_FILE"] = run_file
    return env


def log_file_name(app: AppSpec, now: datetime.datetime) -> str:
    return f"{app.app_id}_{now.strftime('%Y%m%d%H%M%S')}.log"


def _to_console(app: AppSpec) -> bool:
    destinations = {app.app_log_destination, app.daprd_log_destination}
    return bool(destinations & {"console", "fileAndConsole"})


def _to_file(app: AppSpec) -> bool:
    destinations = {app.app_log_destination, app.daprd_log_destination}
    return bool(destinations & {"file", "fileAndConsole"})


@dataclass(slots=True)
class _Child:
    app: AppSpec
    proc: asyncio.subprocess.Process
    log: TextIO | None
    console: bool
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.prefix = PREFIX.format(self.app.app_id)

    def emit(self, line: str) -> None:
        if self.console:
            with contextlib.suppress(OSError):  # a closed terminal must not stop the apps
                sys.stdout.write(self.prefix + line + "\n")
                sys.stdout.flush()
        if self.log is not None:
            self.log.write(line + "\n")
            self.log.flush()

    def signal_group(self, sig: signal.Signals) -> None:
        # The child leads its own process group, which holds its app too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def _check_defaults(run_file: RunFile) -> bool:
    default = default_resources_path()
    users = [a.app_id for a in run_file.apps if not a.resources_paths]
    if users and not default.is_dir():
        status(
            f"❌  {run_file.path}: apps {', '.join(users)} use the default resources folder "
            f"{default}, which does not exist. Run `daprlite init` first, or set resourcesPaths."
        )
        return False
    return True


async def _start(app: AppSpec, run_file: RunFile) -> _Child | None:
    status(f"ℹ️  Starting app {app.app_id!r} in {app.app_dir}")
    log: TextIO | None = None
    try:
        if _to_file(app):
            folder = app.app_dir / ".dapr" / "logs"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / log_file_name(app, datetime.datetime.now())
            log = path.open("a", encoding="utf-8")
            status(f"ℹ️  Writing the logs of {app.app_id!r} to {path}")
        proc = await asyncio.create_subprocess_exec(
            *child_argv(app),
            cwd=app.app_dir,
            env=child_env(app, str(run_file.path)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: signalled as one
        )
    except OSError as exc:
        status(f"❌  Failed to start app {app.app_id!r}: {exc}")
        if log is not None:
            log.close()
        return None
    return _Child(app, proc, log, _to_console(app))


async def _pump(child: _Child) -> None:
    """Copy the child's output line by line (lines of any length, any bytes)."""
    stream = child.proc.stdout
    assert stream is not None
    pending = b""
    while chunk := await stream.read(65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            child.emit(raw.decode("utf-8", "replace").rstrip("\r"))
    if pending:
        child.emit(pending.decode("utf-8", "replace"))


async def _watch(child: _Child) -> int:
    pump = asyncio.ensure_future(_pump(child))
    code = await child.proc.wait()
    # On timeout wait_for cancels the copy: a leftover process holds the pipe open.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pump, OUTPUT_DRAIN_SECONDS)
    if child.log is not None:
        child.log.close()
    if code == 0:
        status(f"✅  App {child.app.app_id!r} exited successfully")
    else:
        status(f"❌  App {child.app.app_id!r} exited with code {code}")
    return code


async def run_apps(run_file: RunFile) -> int:
    """Start every app of ``run_file``; return when all have exited."""
    for warning in run_file.warnings:
        status(f"⚠️  {warning}")
    if not _check_defaults(run_file):
        return 1
    children: list[_Child] = []
    failed = 0
    for app in run_file.apps:
        child = await _start(app, run_file)
        if child is None:
            failed += 1
        else:
            children.append(child)
    if not children:
        return 1

    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal(_sig: signal.Signals) -> None:
        nonlocal signals_seen
        signals_seen += 1
        running = [c for c in children if c.proc.returncode is None]
        if signals_seen > 1:
            for c in running:
                c.signal_group(signal.SIGKILL)
            return
        status("ℹ️  Stopping all apps")
        for c in running:
            with contextlib.suppress(ProcessLookupError):
                c.proc.send_signal(signal.SIGTERM)
        loop.call_later(CHILD_STOP_SECONDS, kill_leftovers)

    def kill_leftovers() -> None:
        for c in children:
            if c.proc.returncode is None:
                status(f"⚠️  App {c.app.app_id!r} did not stop in time; killing it")
                c.signal_group(signal.SIGKILL)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    codes = await asyncio.gather(*(_watch(c) for c in children))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    return 0 if failed == 0 and all(code == 0 for code in codes) else 1
