"""The ``daprlite`` command: ``run``, ``sidecar``, ``init`` and ``--version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from daprlite import __version__
from daprlite.cli import init as init_cmd
from daprlite.cli.flags import add_sidecar_flags, options_from
from daprlite.cli.run import (
    default_resources_path,
    generated_app_id,
    run_async,
    run_sidecar_only,
    run_with_app,
    status,
)
from daprlite.config.options import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="daprlite", description="A Dapr-compatible sidecar.")
    p.add_argument("--version", "-v", action="version", version=f"daprlite {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a sidecar and, after --, your app",
        usage="daprlite run [flags] [-- command ...]",
    )
    add_sidecar_flags(run, default_http=0, default_grpc=0)
    side = sub.add_parser("sidecar", help="run only the sidecar (ports default to 3500/50001)")
    add_sidecar_flags(side, default_http=DEFAULT_HTTP_PORT, default_grpc=DEFAULT_GRPC_PORT)
    sub.add_parser("init", help="write the embedded default components to ~/.daprlite")
    return p


def _resources(args: argparse.Namespace, required_default: bool) -> list[Path] | None:
    if args.resources_paths:
        return [Path(p).expanduser() for p in args.resources_paths]
    default = default_resources_path()
    if default.is_dir():
        return [default]
    if required_default:
        status(
            f"❌  No resources path given and {default} does not exist. "
            "Run `daprlite init` first, or pass --resources-path DIR."
        )
        return None
    return []


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in raw:
        i = raw.index("--")
        raw, command = raw[:i], raw[i + 1 :]
    parser = _parser()
    args = parser.parse_args(raw)
    if args.command == "init":
        for line in init_cmd.init():
            status(line)
        return 0
    if args.command not in ("run", "sidecar"):
        parser.print_help()
        return 2
    if command and args.command == "sidecar":
        parser.error("`daprlite sidecar` takes no app command; use `daprlite run ... -- cmd`")
    resources = _resources(args, required_default=args.command == "run")
    if resources is None:
        return 1
    app_id = args.app_id or generated_app_id()
    if "." in app_id:
        parser.error(f"--app-id {app_id!r} must not contain dots")
    options = options_from(args, app_id, resources)
    if command:
        return run_async(run_with_app(options, command))
    return run_async(run_sidecar_only(options))


if __name__ == "__main__":
    sys.exit(main())
