"""The multi-app run file (``dapr.yaml``) behind ``daprlite run -f`` and ``daprlite stop -f``.

Where it sits: before anything starts. :func:`load` reads the file, checks
every value, merges ``common`` into each app and resolves every path, so that
:mod:`daprlite.cli.multiapp` can turn each :class:`AppSpec` into the flags of
one ``daprlite run`` child. The format is Dapr's (dapr-api.md 11.2):

- ``version: 1`` is required; ``apps`` is a non-empty list; ``appDirPath`` is
  required for each app, and ``appID`` defaults to that folder's name;
- a key of ``common`` is used by every app that leaves it empty, and ``env``
  is merged, the app's entries winning;
- relative paths in ``common`` and ``appDirPath`` are relative to the run
  file, other relative paths of an app to its ``appDirPath``;
- resources: the app's own paths, else ``{appDirPath}/.dapr/resources`` when
  it exists, else ``common``'s, else the default folder (an empty tuple here);
  the Configuration file follows the same order with ``.dapr/config.yaml``.

Keys that Dapr knows but daprlite does not serve (``placementHostAddress``,
...) and unknown keys are reported as warnings, never errors: a run file
written for Dapr keeps working. A bad value is a :class:`RunFileError` naming
the file, the field (``apps[1].appPort``) and what was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from daprlite.cli.runfile_keys import (
    APP_ONLY,
    KNOWN,
    NOT_SERVED,
    PATH_KEYS,
    SHARED,
    Invalid,
    show,
)

DEFAULT_FILE_NAME = "dapr.yaml"
T = TypeVar("T")


class RunFileError(Exception):
    """A run file that cannot be used; the message names the file and the field."""

    def __init__(self, file: Path, where: str, expected: str) -> None:
        super().__init__(f"{file}: {where}: {expected}" if where else f"{file}: {expected}")
        self.file = file
        self.where = where


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One app of a run file, merged with ``common`` and with absolute paths.

    ``None`` means "not set": the ``daprlite run`` default applies.
    """

    index: int  # position in ``apps``, for messages
    app_id: str
    app_dir: Path
    command: tuple[str, ...] = ()
    app_port: int | None = None
    app_protocol: str | None = None
    app_channel_address: str | None = None
    http_port: int | None = None
    grpc_port: int | None = None
    internal_port: int | None = None
    resources_paths: tuple[Path, ...] = ()  # empty: the default folder (daprlite_home()/components)
    config_file: Path | None = None
    log_level: str | None = None
    app_max_concurrency: int | None = None
    enable_api_logging: bool | None = None
    max_body_size: int | None = None
    listen_addresses: str | None = None
    enable_app_health_check: bool | None = None
    app_health_check_path: str | None = None
    app_health_probe_interval: float | None = None  # seconds
    app_health_probe_timeout: float | None = None  # milliseconds, as the flag
    app_health_threshold: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    app_log_destination: str = "fileAndConsole"
    daprd_log_destination: str = "file"


@dataclass(frozen=True, slots=True)
class RunFile:
    path: Path  # absolute
    apps: tuple[AppSpec, ...]
    warnings: tuple[str, ...] = ()


def resolve_path(given: str | Path) -> Path:
    """The run file named on the command line: a file, or ``dapr.yaml`` in a folder."""
    path = Path(given).expanduser()
    if path.is_dir():
        path = path / DEFAULT_FILE_NAME
    return path.resolve()


class _Reader:
    """Checks one run file, collecting warnings; raises RunFileError on the first bad value."""

    def __init__(self, path: Path, check_paths: bool) -> None:
        self.path = path
        self.base = path.parent
        self.check_paths = check_paths
        self.warnings: list[str] = []

    def fail(self, where: str, expected: str) -> RunFileError:
        return RunFileError(self.path, where, expected)

    def section(
        self, raw: object, where: str, allowed: Mapping[str, Callable[[object], object]]
    ) -> dict[str, object]:
        """The checked values of one mapping (``common`` or ``apps[i]``), None/empty dropped."""
        if not isinstance(raw, dict):
            raise self.fail(where, f"expected a mapping, got {show(raw)}")
        out: dict[str, object] = {}
        for key, value in raw.items():
            name = f"{where}.{key}"
            if key in allowed:
                if value is None or value == "" or value == [] or value == {}:
                    continue  # empty: "not set", as in Dapr
                try:
                    out[str(key)] = allowed[key](value)
                except Invalid as exc:
                    raise self.fail(name, str(exc)) from None
            elif key in APP_ONLY:
                raise self.fail(name, "expected only under apps[]: every app needs its own")
            elif key in NOT_SERVED:
                self.warnings.append(f"{self.path}: {name}: not supported by daprlite; ignored")
            else:
                hint = difflib.get_close_matches(str(key), KNOWN, n=1)
                tip = f" (did you mean {hint[0]}?)" if hint else ""
                self.warnings.append(f"{self.path}: {name}: unknown key; ignored{tip}")
        return out

    def folder(self, text: str, base: Path, where: str) -> Path:
        path = (base / Path(text).expanduser()).resolve()
        if self.check_paths and not path.is_dir():
            raise self.fail(where, f"expected an existing directory, got {text!r} ({path})")
        return path

    def file(self, text: str, base: Path, where: str) -> Path:
        path = (base / Path(text).expanduser()).resolve()
        if self.check_paths and not path.is_file():
            raise self.fail(where, f"expected an existing file, got {text!r} ({path})")
        return path

    def resources(self, values: Mapping[str, object], base: Path, where: str) -> tuple[Path, ...]:
        out: list[Path] = []
        for key in PATH_KEYS:
            for text in _typed(values, key, tuple) or ():
                out.append(self.folder(str(text), base, f"{where}.{key}"))
        return tuple(out)


def load(path: Path, check_paths: bool = True) -> RunFile:
    """Read and check the run file at ``path`` (absolute); raises :class:`RunFileError`.

    ``check_paths=False`` skips the checks that folders and files exist
    (``daprlite stop -f`` only needs the app ids).
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(path, "", "no such run file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(path, "", f"cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise RunFileError(path, "", f"is not valid YAML: {_yaml_problem(exc)}") from None
    reader = _Reader(path, check_paths)
    if not isinstance(raw, dict):
        raise reader.fail("", "expected a mapping with version and apps")
    version = raw.get("version")
    if version != 1 or isinstance(version, bool):
        got = "nothing (it is required)" if version is None else show(version)
        raise reader.fail("version", f"expected 1, got {got}")
    for key in raw:
        if key not in ("version", "common", "apps"):
            reader.warnings.append(f"{path}: {key}: unknown key; ignored")
    common = reader.section(raw.get("common") or {}, "common", SHARED)
    common_resources = reader.resources(common, reader.base, "common")
    common_config = (
        reader.file(str(common["configFilePath"]), reader.base, "common.configFilePath")
        if "configFilePath" in common
        else None
    )
    apps_raw = raw.get("apps")
    if not isinstance(apps_raw, list) or not apps_raw:
        raise reader.fail("apps", f"expected a non-empty list of apps, got {show(apps_raw)}")
    apps: list[AppSpec] = []
    for i, item in enumerate(apps_raw):
        app = _app(reader, i, item, common, common_resources, common_config)
        for other in apps:
            if other.app_id == app.app_id:
                raise reader.fail(
                    f"apps[{i}].appID",
                    f"expected a unique app id; {app.app_id!r} is also apps[{other.index}]",
                )
        apps.append(app)
    _check_ports_unique(reader, apps)
    return RunFile(path, tuple(apps), tuple(reader.warnings))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message on one line: the problem and where it is."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def _app(
    reader: _Reader,
    i: int,
    raw: object,
    common: Mapping[str, object],
    common_resources: tuple[Path, ...],
    common_config: Path | None,
) -> AppSpec:
    where = f"apps[{i}]"
    own = reader.section(raw, where, {**APP_ONLY, **SHARED})
    if "appDirPath" not in own:
        raise reader.fail(f"{where}.appDirPath", "expected the app's folder (required)")
    app_dir = reader.folder(str(own["appDirPath"]), reader.base, f"{where}.appDirPath")
    app_id = own.get("appID")
    if app_id is None:
        app_id = app_dir.name
        if not app_id or "." in app_id:
            raise reader.fail(
                f"{where}.appID",
                f"expected an app id; the folder name {app_id!r} cannot be one (set appID)",
            )
    resources = reader.resources(own, app_dir, where)
    if not resources:
        local = app_dir / ".dapr" / "resources"
        resources = (local,) if local.is_dir() else common_resources
    config = (
        reader.file(str(own["configFilePath"]), app_dir, f"{where}.configFilePath")
        if "configFilePath" in own
        else None
    )
    if config is None:
        local_config = app_dir / ".dapr" / "config.yaml"
        config = local_config if local_config.is_file() else common_config
    merged = {**common, **own}
    env = {**(_typed(common, "env", dict) or {}), **(_typed(own, "env", dict) or {})}
    size = _typed(merged, "maxBodySize", int) or _typed(merged, "daprHTTPMaxRequestSize", int)
    return AppSpec(
        index=i,
        app_id=str(app_id),
        app_dir=app_dir,
        command=_typed(own, "command", tuple) or (),
        app_port=_typed(merged, "appPort", int) or None,  # 0 means "no app port", as the flag
        app_protocol=_typed(merged, "appProtocol", str),
        app_channel_address=_typed(merged, "appChannelAddress", str),
        http_port=_typed(merged, "daprHTTPPort", int),
        grpc_port=_typed(merged, "daprGRPCPort", int),
        internal_port=_typed(merged, "daprInternalGRPCPort", int),
        resources_paths=resources,
        config_file=config,
        log_level=_typed(merged, "logLevel", str),
        app_max_concurrency=_typed(merged, "appMaxConcurrency", int),
        enable_api_logging=_typed(merged, "enableApiLogging", bool),
        max_body_size=size,
        listen_addresses=_typed(merged, "apiListenAddresses", str),
        enable_app_health_check=_typed(merged, "enableAppHealthCheck", bool),
        app_health_check_path=_typed(merged, "appHealthCheckPath", str),
        app_health_probe_interval=_typed(merged, "appHealthProbeInterval", float),
        app_health_probe_timeout=_typed(merged, "appHealthProbeTimeout", float),
        app_health_threshold=_typed(merged, "appHealthThreshold", int),
        env=env,
        app_log_destination=_typed(merged, "appLogDestination", str) or "fileAndConsole",
        daprd_log_destination=_typed(merged, "daprdLogDestination", str) or "file",
    )


def _typed(values: Mapping[str, object], key: str, kind: type[T]) -> T | None:
    """A checked value (its check function gave it this type), or None when unset."""
    value = values.get(key)
    return value if isinstance(value, kind) else None


def _check_ports_unique(reader: _Reader, apps: list[AppSpec]) -> None:
    """Two sidecars given the same fixed port would fail at start; say so before anything runs."""
    seen: dict[int, str] = {}
    for app in apps:
        for key, port in (
            ("daprHTTPPort", app.http_port),
            ("daprGRPCPort", app.grpc_port),
            ("daprInternalGRPCPort", app.internal_port),
        ):
            if not port:
                continue
            where = f"apps[{app.index}].{key}"
            if port in seen:
                raise reader.fail(where, f"expected a free port; {port} is also {seen[port]}")
            seen[port] = where
