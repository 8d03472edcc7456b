"""The keys of a multi-app run file and the check of each value (``daprlite run -f``).

Where it sits: used by :mod:`daprlite.cli.runfile` while it reads the file,
before anything starts. Each check returns the typed value or raises
:class:`Invalid` with what was expected; the reader adds the file and the field
(``apps[1].appPort``). The tables say which keys only an app may set, which
``common`` may set too, and which Dapr keys daprlite accepts but does not serve.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from daprlite.cli.flags import LOG_LEVELS, PROTOCOLS
from daprlite.cli.flags import _size as parse_size

LOG_DESTINATIONS = ("console", "file", "fileAndConsole")


class Invalid(Exception):
    """A value that does not fit; the message says what was expected."""


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a non-empty string, got {show(value)}")
    return value.strip()


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected an integer, got {show(value)}")
    return value


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise Invalid(f"expected a port number 0-65535, got {show(value)}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {show(value)}")
    return value


def _positive(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise Invalid(f"expected a number greater than 0, got {show(value)}")
    return float(value)


def _threshold(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid(f"expected an integer of at least 1, got {show(value)}")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value not in choices:
            raise Invalid(f"expected one of {', '.join(choices)}, got {show(value)}")
        return str(value)

    return check


def _app_id(value: object) -> str:
    text = _string(value)
    if "." in text:
        raise Invalid(f"expected an app id without dots, got {show(value)}")
    return text


def _command(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"expected a list of strings such as [python, app.py], got {show(value)}")
    return tuple(value)


def _string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_string(value),)
    if not isinstance(value, list) or not value:
        raise Invalid(f"expected a list of paths, got {show(value)}")
    return tuple(_string(v) for v in value)


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"expected a size such as 4Mi or 1048576, got {show(value)}")
    try:
        size = parse_size(str(value))
    except argparse.ArgumentTypeError:
        raise Invalid(f"expected a size such as 4Mi or 1048576, got {show(value)}") from None
    if size <= 0:
        raise Invalid(f"expected a size greater than 0, got {show(value)}")
    return size


def _megabytes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Invalid(f"expected a number of megabytes greater than 0, got {show(value)}")
    return value * 1024 * 1024


def _addresses(value: object) -> str:
    parts = _string_list(value)
    return ",".join(p.strip() for text in parts for p in text.split(",") if p.strip())


def _health_path(value: object) -> str:
    text = _string(value)
    if not text.startswith("/"):
        raise Invalid(f"expected a path starting with /, got {show(value)}")
    return text


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of NAME: value, got {show(value)}")
    out: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise Invalid(f"expected variable names without '=', got {show(name)}")
        if isinstance(item, bool):
            out[name] = "true" if item else "false"
        elif isinstance(item, str | int | float):
            out[name] = str(item)
        elif item is None:
            out[name] = ""
        else:
            raise Invalid(f"expected a plain value for {name}, got {show(item)}")
    return out


# Keys only an app may set (a port or an id shared by every app makes no sense).
APP_ONLY: dict[str, Callable[[object], object]] = {
    "appID": _app_id,
    "appDirPath": _string,
    "appPort": _port,
    "command": _command,
    "daprHTTPPort": _port,
    "daprGRPCPort": _port,
    "daprInternalGRPCPort": _port,
}
# Keys an app or ``common`` may set. Paths are strings here and resolved later.
SHARED: dict[str, Callable[[object], object]] = {
    "appProtocol": _one_of(PROTOCOLS),
    "appChannelAddress": _string,
    "resourcesPath": _string_list,
    "resourcesPaths": _string_list,
    "componentsPath": _string_list,
    "configFilePath": _string,
    "logLevel": _one_of(LOG_LEVELS),
    "appMaxConcurrency": _int,
    "enableApiLogging": _bool,
    "maxBodySize": _size,
    "daprHTTPMaxRequestSize": _megabytes,
    "apiListenAddresses": _addresses,
    "enableAppHealthCheck": _bool,
    "appHealthCheckPath": _health_path,
    "appHealthProbeInterval": _positive,
    "appHealthProbeTimeout": _positive,
    "appHealthThreshold": _threshold,
    "env": _env,
    "appLogDestination": _one_of(LOG_DESTINATIONS),
    "daprdLogDestination": _one_of(LOG_DESTINATIONS),
}
# Dapr keys with no daprlite counterpart: accepted with a warning.
NOT_SERVED = frozenset(
    {
        "metricsPort",
        "profilePort",
        "enableProfiling",
        "placementHostAddress",
        "schedulerHostAddress",
        "unixDomainSocket",
        "appSSL",
        "readBufferSize",
        "daprHTTPReadBufferSize",
        "runtimePath",
    }
)
KNOWN = sorted({*APP_ONLY, *SHARED, *NOT_SERVED})
PATH_KEYS = ("resourcesPaths", "resourcesPath", "componentsPath")
