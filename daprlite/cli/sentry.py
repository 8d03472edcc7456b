"""``daprlite sentry``: run the Kubernetes certificate authority (``daprlite.sentry``).

Parses the flags into :class:`SentryOptions`, connects to the API server
(``KUBECONFIG`` or the pod's service account), then serves until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from daprlite.cli._control_plane import missing_extra, serve_until_signalled
from daprlite.cli.flags import LOG_LEVELS
from daprlite.components.metadata import parse_duration
from daprlite.injector.annotations import is_valid_trust_domain
from daprlite.observability.logging import setup_logging

if TYPE_CHECKING:
    from daprlite.sentry.server import SentryOptions

DEFAULT_NAMESPACE = "daprlite-system"


def _duration(text: str) -> dt.timedelta:
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as '24h', got {text!r}"
        )
    return dt.timedelta(seconds=seconds)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sentry", help="run the Kubernetes certificate authority for sidecars")
    p.add_argument("--port", type=int, default=8443, help="HTTPS port to serve /v1/sign on")
    p.add_argument("--listen-address", default="0.0.0.0")
    p.add_argument(
        "--namespace",
        default=None,
        help=f"where the CA Secret lives (default: $NAMESPACE, else {DEFAULT_NAMESPACE})",
    )
    p.add_argument(
        "--trust-domain",
        default="public",
        help="the SPIFFE trust domain of certificates whose request names none (Dapr's default)",
    )
    p.add_argument(
        "--ca-secret",
        default="daprlite-trust-bundle",
        metavar="NAME",
        help="the Secret (in --namespace) holding ca.crt and ca.key; created when absent",
    )
    p.add_argument(
        "--token-audience",
        default="daprlite-sentry",
        help="the audience sidecars' projected service-account tokens must carry",
    )
    p.add_argument(
        "--workload-cert-ttl", type=_duration, default=dt.timedelta(hours=24), metavar="DURATION"
    )
    p.add_argument(
        "--allowed-clock-skew",
        type=_duration,
        default=dt.timedelta(minutes=15),
        metavar="DURATION",
    )
    p.add_argument(
        "--tls-cert-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="serve this certificate instead of one issued from the CA (with --tls-key-file)",
    )
    p.add_argument("--tls-key-file", type=Path, default=None, metavar="FILE")
    p.add_argument(
        "--trust-bundle-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the CA certificate (ca.crt) here, e.g. for the injector",
    )
    p.add_argument(
        "--sign-rate-limit",
        type=float,
        default=5.0,
        metavar="PER_SECOND",
        help="/v1/sign requests per second per client address, each a TokenReview (0: none)",
    )
    p.add_argument("--sign-burst", type=int, default=20, help="requests a client may send at once")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument("--log-as-json", action="store_true")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    # The sentry needs the Kubernetes extra; other commands must not.
    try:
        from daprlite.sentry.server import SentryOptions
    except ModuleNotFoundError as exc:
        return missing_extra("sentry", exc)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port: expected a port in 1-65535, got {args.port}")
    if not is_valid_trust_domain(args.trust_domain):
        parser.error(
            f"--trust-domain: expected lower-case letters, digits, '-' and '.', got "
            f"{args.trust_domain!r}"
        )
    if args.sign_rate_limit < 0 or args.sign_burst < 1:
        parser.error("--sign-rate-limit must be >= 0 and --sign-burst >= 1")
    if (args.tls_cert_file is None) != (args.tls_key_file is None):
        parser.error("--tls-cert-file and --tls-key-file go together")
    for flag, path in (
        ("--tls-cert-file", args.tls_cert_file),
        ("--tls-key-file", args.tls_key_file),
    ):
        if path is not None and not path.is_file():
            parser.error(f"{flag} {path}: no such file")
    options = SentryOptions(
        port=args.port,
        listen_address=args.listen_address,
        namespace=args.namespace or os.environ.get("NAMESPACE", "") or DEFAULT_NAMESPACE,
        trust_domain=args.trust_domain,
        workload_cert_ttl=args.workload_cert_ttl,
        allowed_clock_skew=args.allowed_clock_skew,
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_key_file,
        trust_bundle_file=args.trust_bundle_file,
        ca_secret=args.ca_secret,
        token_audience=args.token_audience,
        sign_rate=args.sign_rate_limit,
        sign_burst=args.sign_burst,
    )
    setup_logging(args.log_level, args.log_as_json, "sentry")
    try:
        return asyncio.run(_main(options))
    except OSError as exc:
        print(f"daprlite sentry: cannot serve on port {args.port}: {exc}", file=sys.stderr)
    return 1


async def _main(options: SentryOptions) -> int:
    from daprlite.sentry.bundle import TrustBundleError
    from daprlite.sentry.server import serve

    return await serve_until_signalled(
        "sentry",
        options.kubeconfig,
        lambda client, stop: serve(options, client, stop),
        fatal=(TrustBundleError,),
    )
