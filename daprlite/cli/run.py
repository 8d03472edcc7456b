"""``daprlite run`` and ``daprlite sidecar``: start a sidecar, then (optionally) the app.

The sidecar runs in this process. It binds its ports and loads its components
before the app command starts; the app gets ``DAPR_HTTP_PORT``,
``DAPR_GRPC_PORT``, ``APP_ID`` (and ``APP_PORT``, ``DAPR_METRICS_PORT``) and inherits stdout/stderr
unchanged. Status lines use ``dapr run``'s wording so tooling that watches for
them keeps working. Exit code: the app's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path

from daprlite.config.options import Options, daprlite_home
from daprlite.observability.logging import setup_logging
from daprlite.runtime.sidecar import Sidecar


def status(line: str) -> None:
    print(line, flush=True)


def default_resources_path() -> Path:
    return daprlite_home() / "components"


def generated_app_id() -> str:
    return f"app-{secrets.token_hex(3)}"


async def _start(options: Options) -> Sidecar | None:
    setup_logging(options.log_level, options.log_as_json, options.app_id)
    sidecar = Sidecar(options)
    try:
        await sidecar.start()
    except Exception as exc:  # every start-up error ends here with one clear line
        status(f"❌  Failed to start daprlite: {exc}")
        return None
    # Everything loaded so far (modules, components) lives as long as the process:
    # keep it out of the cyclic collector's scans, which otherwise run every few
    # requests and walk all of it.
    gc.freeze()
    return sidecar


def _install_signals(handler: object) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler, sig)  # type: ignore[arg-type]


async def run_sidecar_only(options: Options) -> int:
    sidecar = await _start(options)
    if sidecar is None:
        return 1
    assert sidecar.ports is not None
    status(
        f"ℹ️  Starting Dapr with id {options.app_id}. "
        f"HTTP Port: {sidecar.ports.http}. gRPC Port: {sidecar.ports.grpc}"
    )
    status("✅  You're up and running! Dapr logs will appear here.")
    _install_signals(lambda _sig: sidecar.request_shutdown())
    await sidecar.wait_for_shutdown()
    await sidecar.stop()
    status("✅  Exited Dapr successfully")
    return 0


def app_environment(options: Options, sidecar: Sidecar) -> dict[str, str]:
    assert sidecar.ports is not None
    env = dict(os.environ)
    if env.pop("DAPRLITE_GRPC_FORK_SUPPORT_SET", None):
        env.pop("GRPC_ENABLE_FORK_SUPPORT", None)  # ours, not the app's (see daprlite.cli)
    env.update(
        APP_ID=options.app_id,
        DAPR_HTTP_PORT=str(sidecar.ports.http),
        DAPR_GRPC_PORT=str(sidecar.ports.grpc),
        APP_PROTOCOL=options.app_protocol,
        APP_CHANNEL_ADDRESS=options.app_channel_address,
    )
    if options.app_port:
        env["APP_PORT"] = str(options.app_port)
    if sidecar.ports.metrics:
        env["DAPR_METRICS_PORT"] = str(sidecar.ports.metrics)
    return env


async def run_with_app(options: Options, command: Sequence[str]) -> int:
    sidecar = await _start(options)
    if sidecar is None:
        return 1
    assert sidecar.ports is not None
    status(
        f"ℹ️  Starting Dapr with id {options.app_id}. "
        f"HTTP Port: {sidecar.ports.http}. gRPC Port: {sidecar.ports.grpc}"
    )
    try:
        proc = await asyncio.create_subprocess_exec(*command, env=app_environment(options, sidecar))
    except OSError as exc:
        status(f"❌  Failed to start the app command {command[0]!r}: {exc}")
        await sidecar.stop()
        return 1
    status("✅  You're up and running! Both Dapr and your app logs will appear here.")
    sidecar.record_app(proc.pid, " ".join(command), os.getcwd())
    sidecar.metadata.set("appCommand", " ".join(command))
    sidecar.metadata.set("appPID", str(proc.pid))
    sidecar.metadata.set("cliPID", str(os.getpid()))
    if options.app_port:
        sidecar.metadata.set("appPort", str(options.app_port))

    # A terminal's Ctrl-C already reaches the app (same process group), so only
    # forward SIGINT when it cannot have come from a terminal.
    interactive = sys.stdin is not None and sys.stdin.isatty()

    signals_seen = 0
    loop = asyncio.get_running_loop()

    def forward(sig: signal.Signals) -> None:
        # First signal: pass it on and give the app the grace period to exit.
        # A second signal, or an app still running after the grace period, is
        # killed, so `daprlite run` can always be stopped.
        nonlocal signals_seen
        signals_seen += 1
        if proc.returncode is not None:
            return
        if signals_seen > 1:
            proc.kill()
            return
        if not (sig == signal.SIGINT and interactive):
            proc.send_signal(sig)
        loop.call_later(options.graceful_shutdown_seconds, _kill_if_running)

    def _kill_if_running() -> None:
        if proc.returncode is None:
            status("⚠️  The app did not exit within the grace period; killing it")
            proc.kill()

    _install_signals(forward)
    app_done = asyncio.ensure_future(proc.wait())
    shutdown = asyncio.ensure_future(sidecar.wait_for_shutdown())
    await asyncio.wait({app_done, shutdown}, return_when=asyncio.FIRST_COMPLETED)
    if not app_done.done():
        # The sidecar was asked to shut down: stop the app too, as dapr run does.
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(app_done), options.graceful_shutdown_seconds)
        except TimeoutError:
            proc.kill()
            await app_done
    shutdown.cancel()
    code = proc.returncode if proc.returncode is not None else 1
    if code == 0:
        status("✅  Exited App successfully")
    else:
        status(f"❌  The App process exited with error code: exit status {code}")
    await sidecar.stop()
    status("✅  Exited Dapr successfully")
    return 128 - code if code < 0 else code


async def _watch_slow_callbacks(coro: Coroutine[object, object, int]) -> int:
    """With DAPRLITE_SLOW_CALLBACK_MS set, log every callback that holds the loop that long.

    A diagnostic for operators and for the test that guards design decision D2.
    """
    limit = os.environ.get("DAPRLITE_SLOW_CALLBACK_MS")
    if limit:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = float(limit) / 1000
        logging.getLogger("asyncio").addHandler(logging.StreamHandler(sys.stderr))
    return await coro


def run_async(coro: Coroutine[object, object, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_watch_slow_callbacks(coro))
    return uvloop.run(_watch_slow_callbacks(coro))
