"""The ``daprlite`` command: ``run`` (and ``run -f``), ``sidecar``, ``init``, ``list``, ``stop``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from daprlite import __version__
from daprlite.cli import init as init_cmd
from daprlite.cli import injector as injector_cmd
from daprlite.cli import listing, runfile
from daprlite.cli import operator as operator_cmd
from daprlite.cli import sentry as sentry_cmd
from daprlite.cli.flags import add_sidecar_flags, options_from, sidecar_mode
from daprlite.cli.multiapp import run_apps
from daprlite.cli.run import (
    default_resources_path,
    generated_app_id,
    run_async,
    run_sidecar_only,
    run_with_app,
    status,
)
from daprlite.config.options import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT

# The same rule the invocation API applies to the ids it is asked to call.
_APP_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")


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
    run.add_argument(
        "--run-file",
        "-f",
        default=None,
        metavar="FILE|DIR",
        help="run every app of a multi-app run file (a folder means its dapr.yaml)",
    )
    side = sub.add_parser("sidecar", help="run only the sidecar (ports default to 3500/50001)")
    add_sidecar_flags(side, default_http=DEFAULT_HTTP_PORT, default_grpc=DEFAULT_GRPC_PORT)
    init_p = sub.add_parser(
        "init", help="write the embedded default components and a local CA to ~/.daprlite"
    )
    init_p.add_argument(
        "--renew-ca",
        action="store_true",
        help="replace the local mTLS certificate authority (running sidecars keep the old one)",
    )
    lst = sub.add_parser("list", help="list the daprlite sidecars running on this machine")
    lst.add_argument("--output", "-o", choices=("table", "json"), default="table")
    stop = sub.add_parser(
        "stop",
        help="stop running sidecars and their apps",
        usage="daprlite stop (--app-id ID ... | -f FILE|DIR)",
    )
    stop.add_argument(
        "--app-id", "-a", action="append", dest="app_ids", default=[], help="repeatable"
    )
    stop.add_argument(
        "--run-file", "-f", default=None, metavar="FILE|DIR", help="every app of this run file"
    )
    injector_cmd.add_parser(sub)
    sentry_cmd.add_parser(sub)
    operator_cmd.add_parser(sub)
    return p


def _multi_app_run(
    parser: argparse.ArgumentParser, args: argparse.Namespace, command: list[str]
) -> int:
    """``daprlite run -f``: everything else comes from the run file."""
    if command:
        parser.error("`daprlite run -f` takes no app command; each app's is in the run file")
    defaults = vars(parser.parse_args(["run"]))
    others = sorted(k for k, v in vars(args).items() if k != "run_file" and v != defaults[k])
    if others:
        flags = ", ".join("--" + k.replace("_", "-") for k in others)
        parser.error(f"--run-file cannot be combined with {flags}; set them in the run file")
    try:
        spec = runfile.load(runfile.resolve_path(args.run_file))
    except runfile.RunFileError as exc:
        status(f"❌  {exc}")
        return 1
    return run_async(run_apps(spec))


def _resources(args: argparse.Namespace, required_default: bool) -> list[Path] | None:
    if args.resources_paths:
        return [Path(p).expanduser() for p in args.resources_paths]
    if sidecar_mode(args) == "kubernetes":
        return []  # the cluster holds the resources; only folders given explicitly add to them
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
        for line in init_cmd.init(renew_ca=args.renew_ca):
            status(line)
        return 0
    if args.command == "list":
        return listing.list_command(args.output)
    if args.command == "injector":
        return injector_cmd.run(parser, args)
    if args.command == "sentry":
        return sentry_cmd.run(parser, args)
    if args.command == "operator":
        return operator_cmd.run(parser, args)
    if args.command == "stop":
        if not args.app_ids and args.run_file is None:
            parser.error("`daprlite stop` needs --app-id ID or -f FILE|DIR")
        return listing.stop_command(args.app_ids, args.run_file)
    if args.command == "run" and args.run_file is not None:
        return _multi_app_run(parser, args, command)
    if args.command not in ("run", "sidecar"):
        parser.print_help()
        return 2
    if command and args.command == "sidecar":
        parser.error("`daprlite sidecar` takes no app command; use `daprlite run ... -- cmd`")
    resources = _resources(args, required_default=args.command == "run")
    if resources is None:
        return 1
    app_id = args.app_id or generated_app_id()
    if not _APP_ID.match(app_id):
        parser.error(
            f"--app-id {app_id!r} must be letters, digits, '-' and '_' (no dots: "
            "'app.namespace' is how other apps address it)"
        )
    options = options_from(args, app_id, resources)
    if command:
        return run_async(run_with_app(options, command))
    return run_async(run_sidecar_only(options))


if __name__ == "__main__":
    sys.exit(main())
