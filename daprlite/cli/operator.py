"""``daprlite operator``: run the Kubernetes operator (``daprlite.operator``).

Parses the flags into :class:`OperatorOptions`, connects to the API server
(``KUBECONFIG`` or the pod's service account), then runs until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from daprlite.cli._control_plane import missing_extra, serve_until_signalled
from daprlite.cli.flags import LOG_LEVELS
from daprlite.observability.logging import setup_logging

if TYPE_CHECKING:
    from daprlite.operator.server import OperatorOptions


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("operator", help="run the Kubernetes operator (per-app headless Services)")
    p.add_argument(
        "--health-port", type=int, default=8080, help="HTTP port of GET /healthz (default 8080)"
    )
    p.add_argument("--listen-address", default="0.0.0.0", help="address of the health server")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument("--log-as-json", action="store_true")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # The operator needs the Kubernetes extra; other commands must not.
    try:
        from daprlite.operator.server import OperatorOptions
    except ModuleNotFoundError as exc:
        return missing_extra("operator", exc)
    if not 1 <= args.health_port <= 65535:
        parser.error(f"--health-port: expected a port in 1-65535, got {args.health_port}")
    options = OperatorOptions(health_port=args.health_port, listen_address=args.listen_address)
    setup_logging(args.log_level, args.log_as_json, "operator")
    try:
        return asyncio.run(_main(options))
    except OSError as exc:
        print(
            f"daprlite operator: cannot serve /healthz on "
            f"{args.listen_address}:{args.health_port}: {exc}",
            file=sys.stderr,
        )
    return 1


async def _main(options: OperatorOptions) -> int:
    from daprlite.operator.server import serve

    return await serve_until_signalled(
        "operator", options.kubeconfig, lambda client, stop: serve(options, client, stop)
    )
