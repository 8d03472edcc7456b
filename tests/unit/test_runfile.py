"""The multi-app run file: merging, defaults, path rules, and errors that name the field."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from daprlite.cli import main as cli_main
from daprlite.cli.flags import options_from
from daprlite.cli.listing import format_table, human_age
from daprlite.cli.multiapp import child_argv, child_env
from daprlite.cli.runfile import RunFile, RunFileError, load, resolve_path
from daprlite.components.nameresolution.runfolder import Instance


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAPRLITE_HOME", str(tmp_path / "home"))
    for name in ("svc/checkout", "svc/stock", "shared", "svc/checkout/res"):
        (tmp_path / name).mkdir(parents=True)
    return tmp_path


def write(root: Path, text: str) -> Path:
    path = root / "dapr.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_text(root: Path, text: str) -> RunFile:
    return load(write(root, text))


def test_minimal_app_gets_folder_name_as_id_and_dapr_defaults(root: Path) -> None:
    spec = load_text(root, "version: 1\napps:\n  - appDirPath: ./svc/checkout/\n")
    (app,) = spec.apps
    assert app.app_id == "checkout"
    assert app.app_dir == root / "svc" / "checkout"
    assert app.command == () and app.app_port is None and app.http_port is None
    assert app.resources_paths == ()  # the default folder, chosen at start
    assert app.config_file is None and dict(app.env) == {}
    assert (app.app_log_destination, app.daprd_log_destination) == ("fileAndConsole", "file")
    assert spec.path == root / "dapr.yaml" and spec.warnings == ()


def test_folder_argument_means_its_dapr_yaml(root: Path) -> None:
    assert resolve_path(root) == (root / "dapr.yaml").resolve()
    assert resolve_path(root / "other.yaml") == (root / "other.yaml").resolve()


def test_common_fills_empty_fields_and_env_merges_with_app_winning(root: Path) -> None:
    spec = load_text(
        root,
        """
        version: 1
        common:
          appProtocol: grpc
          logLevel: debug
          enableApiLogging: true
          env: {SHARED: one, OVERRIDE: common}
        apps:
          - appDirPath: svc/checkout
            appProtocol: http
            enableApiLogging: false
            env: {OVERRIDE: app, PORT: 7001, FLAG: true}
          - appDirPath: svc/stock
        """,
    )
    checkout, stock = spec.apps
    assert checkout.app_protocol == "http" and stock.app_protocol == "grpc"
    assert checkout.log_level == stock.log_level == "debug"
    # an explicit false is a value, not an empty field
    assert checkout.enable_api_logging is False and stock.enable_api_logging is True
    assert dict(checkout.env) == {
        "SHARED": "one",
        "OVERRIDE": "app",
        "PORT": "7001",
        "FLAG": "true",
    }
    assert dict(stock.env) == {"SHARED": "one", "OVERRIDE": "common"}


def test_paths_in_common_are_relative_to_the_run_file_and_app_paths_to_the_app(
    root: Path,
) -> None:
    (root / "shared" / "config.yaml").write_text("kind: Configuration\n")
    (root / "svc" / "stock" / "conf.yaml").write_text("kind: Configuration\n")
    spec = load_text(
        root,
        """
        version: 1
        common:
          resourcesPaths: [./shared]
          configFilePath: shared/config.yaml
        apps:
          - appDirPath: svc/checkout
            resourcesPaths: [res]
          - appDirPath: svc/stock
            configFilePath: ./conf.yaml
        """,
    )
    checkout, stock = spec.apps
    assert checkout.resources_paths == (root / "svc" / "checkout" / "res",)
    assert checkout.config_file == root / "shared" / "config.yaml"
    assert stock.resources_paths == (root / "shared",)
    assert stock.config_file == root / "svc" / "stock" / "conf.yaml"


def test_app_dot_dapr_folder_beats_common_but_not_the_apps_own_paths(root: Path) -> None:
    for app in ("checkout", "stock"):
        local = root / "svc" / app / ".dapr"
        (local / "resources").mkdir(parents=True)
        (local / "config.yaml").write_text("kind: Configuration\n")
    spec = load_text(
        root,
        """
        version: 1
        common: {resourcesPath: shared}
        apps:
          - appDirPath: svc/checkout
          - appDirPath: svc/stock
            resourcesPath: ../checkout/res
        """,
    )
    checkout, stock = spec.apps
    assert checkout.resources_paths == (root / "svc" / "checkout" / ".dapr" / "resources",)
    assert checkout.config_file == root / "svc" / "checkout" / ".dapr" / "config.yaml"
    assert stock.resources_paths == (root / "svc" / "checkout" / "res",)


def test_dapr_keys_daprlite_does_not_serve_and_unknown_keys_only_warn(root: Path) -> None:
    spec = load_text(
        root,
        """
        version: 1
        common: {placementHostAddress: "localhost:50005"}
        apps:
          - appDirPath: svc/checkout
            metricsPort: 9091
            appPorts: 7000
        """,
    )
    assert len(spec.apps) == 1 and spec.apps[0].app_port is None
    text = "\n".join(spec.warnings)
    assert "common.placementHostAddress: not supported" in text
    assert "apps[0].metricsPort: not supported" in text
    assert "apps[0].appPorts: unknown key" in text and "did you mean appPort" in text


APP = "  - appDirPath: svc/checkout\n"
BAD_FILES = [
    ("apps: []\n", "version", "expected 1"),
    ("version: 2\n" + "apps:\n" + APP, "version", "expected 1"),
    ("version: 1\n", "apps", "non-empty list"),
    ("version: 1\napps: [nope]\n", "apps[0]", "expected a mapping"),
    ("version: 1\napps:\n  - appID: x\n", "apps[0].appDirPath", "required"),
    ("version: 1\napps:\n  - appDirPath: missing\n", "apps[0].appDirPath", "existing directory"),
    ("version: 1\napps:\n" + APP + "    appPort: abc\n", "apps[0].appPort", "port number"),
    ("version: 1\napps:\n" + APP + "    appPort: 70000\n", "apps[0].appPort", "port number"),
    ("version: 1\napps:\n" + APP + "    daprHTTPPort: true\n", "apps[0].daprHTTPPort", "port"),
    ("version: 1\napps:\n" + APP + "    appProtocol: ftp\n", "apps[0].appProtocol", "grpc"),
    ("version: 1\napps:\n" + APP + "    command: python app.py\n", "apps[0].command", "list"),
    ("version: 1\napps:\n" + APP + "    logLevel: loud\n", "apps[0].logLevel", "debug"),
    ("version: 1\napps:\n" + APP + "    enableApiLogging: yes-ish\n", "apps[0].enable", "true"),
    ("version: 1\napps:\n" + APP + "    maxBodySize: lots\n", "apps[0].maxBodySize", "4Mi"),
    ("version: 1\napps:\n" + APP + "    appHealthProbeInterval: 0\n", "apps[0].appHealth", "> 0"),
    ("version: 1\napps:\n" + APP + "    appHealthThreshold: 0\n", "apps[0].appHealth", "least 1"),
    ("version: 1\napps:\n" + APP + "    appHealthCheckPath: hz\n", "apps[0].appHealth", "with /"),
    ("version: 1\napps:\n" + APP + "    env: [A=1]\n", "apps[0].env", "NAME: value"),
    ("version: 1\napps:\n" + APP + "    appLogDestination: disk\n", "apps[0].appLog", "console"),
    ("version: 1\napps:\n" + APP + "    appID: a.b\n", "apps[0].appID", "without dots"),
    ("version: 1\napps:\n" + APP + APP, "apps[1].appID", "unique"),
    ("version: 1\ncommon: {appPort: 1}\napps:\n" + APP, "common.appPort", "only under apps"),
    ("version: 1\ncommon: {resourcesPaths: [nope]}\napps:\n" + APP, "common.resourcesPaths", "dir"),
    ("version: 1\napps:\n" + APP + "    configFilePath: c.yaml\n", "apps[0].configFile", "file"),
    (
        "version: 1\napps:\n"
        + APP
        + "    daprHTTPPort: 4100\n  - appDirPath: svc/stock\n    daprGRPCPort: 4100\n",
        "apps[1].daprGRPCPort",
        "also apps[0].daprHTTPPort",
    ),
    ("version: [1\n", "", "not valid YAML"),
    ("- version: 1\n", "", "expected a mapping"),
]


@pytest.mark.parametrize(("text", "field", "expected"), BAD_FILES)
def test_invalid_run_file_names_the_file_the_field_and_the_expected_value(
    root: Path, text: str, field: str, expected: str
) -> None:
    path = write(root, text)
    with pytest.raises(RunFileError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}"), message
    assert expected.replace("> 0", "greater than 0") in message, message
    assert "\n" not in message


def test_missing_run_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RunFileError, match="no such run file"):
        load(tmp_path / "dapr.yaml")


def test_stop_can_read_a_run_file_whose_folders_are_gone(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\napps:\n  - appDirPath: gone/orders\n")
    assert [a.app_id for a in load(path, check_paths=False).apps] == ["orders"]


def test_child_flags_mean_what_the_run_file_says(root: Path) -> None:
    (root / "svc" / "checkout" / "config.yaml").write_text("kind: Configuration\n")
    spec = load_text(
        root,
        """
        version: 1
        apps:
          - appID: checkout
            appDirPath: svc/checkout
            appPort: 7001
            appProtocol: grpc
            appChannelAddress: 127.0.0.2
            command: [python3, app.py, --flag]
            daprHTTPPort: 3601
            daprGRPCPort: 50101
            daprInternalGRPCPort: 50201
            resourcesPaths: [res]
            configFilePath: config.yaml
            logLevel: warn
            appMaxConcurrency: 4
            enableApiLogging: true
            maxBodySize: 2Mi
            apiListenAddresses: "127.0.0.1,::1"
            enableAppHealthCheck: true
            appHealthCheckPath: /ready
            appHealthProbeInterval: 2
            appHealthProbeTimeout: 250
            appHealthThreshold: 5
        """,
    )
    argv = child_argv(spec.apps[0])
    assert argv[:4] == [sys.executable, "-m", "daprlite", "run"]
    i = argv.index("--")
    assert argv[i + 1 :] == ["python3", "app.py", "--flag"]
    args = cli_main._parser().parse_args(argv[3:i])
    opts = options_from(args, args.app_id, [Path(p) for p in args.resources_paths])
    assert (opts.app_id, opts.app_port, opts.app_protocol) == ("checkout", 7001, "grpc")
    assert opts.app_channel_address == "127.0.0.2"
    assert (opts.http_port, opts.grpc_port, opts.internal_port) == (3601, 50101, 50201)
    assert opts.resources_paths == (root / "svc" / "checkout" / "res",)
    assert opts.config_files == (root / "svc" / "checkout" / "config.yaml",)
    assert (opts.log_level, opts.app_max_concurrency) == ("warn", 4)
    assert opts.enable_api_logging and opts.max_body_size == 2 * 1024 * 1024
    assert opts.listen_addresses == ("127.0.0.1", "::1")
    assert opts.app_health is not None
    assert (opts.app_health.path, opts.app_health.interval) == ("/ready", 2.0)
    assert (opts.app_health.timeout, opts.app_health.threshold) == (0.25, 5)


def test_child_without_settings_uses_the_default_resources_and_free_ports(root: Path) -> None:
    spec = load_text(root, "version: 1\napps:\n  - appDirPath: svc/stock\n")
    argv = child_argv(spec.apps[0])
    assert "--" not in argv  # no command: the sidecar alone, as `dapr run -f` does
    args = cli_main._parser().parse_args(argv[3:])
    assert args.resources_paths == [str(root / "home" / "components")]
    assert (args.dapr_http_port, args.dapr_grpc_port, args.app_port) == (0, 0, None)


def test_child_env_names_the_run_file_and_carries_the_apps_env(root: Path) -> None:
    spec = load_text(root, "version: 1\napps:\n  - appDirPath: svc/stock\n    env: {A: b}\n")
    env = child_env(spec.apps[0], str(spec.path))
    assert env["DAPRLITE_RUN_FILE"] == str(root / "dapr.yaml") and env["A"] == "b"


def test_invalid_run_file_exits_1_with_one_line_and_starts_nothing(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(root, "version: 1\napps:\n" + APP + "    appPort: nope\n")
    assert cli_main.main(["run", "-f", str(root)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "apps[0].appPort" in out
    assert not (root / "svc" / "checkout" / ".dapr").exists()  # no log folder: nothing ran


def test_run_file_refuses_other_flags_and_an_app_command(root: Path) -> None:
    write(root, "version: 1\napps:\n" + APP)
    with pytest.raises(SystemExit) as info:
        cli_main.main(["run", "-f", str(root), "--app-port", "7000"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        cli_main.main(["run", "-f", str(root), "--", "python3", "app.py"])


def test_ages_are_shown_in_the_largest_whole_unit() -> None:
    assert [human_age(s) for s in (0, 12.7, 60, 199, 7200, 86400 * 3 + 5)] == [
        "0s",
        "12s",
        "1m",
        "3m",
        "2h",
        "3d",
    ]


def test_list_table_has_one_row_per_sidecar_under_the_headers() -> None:
    inst = Instance(
        "orders", "", "127.0.0.1", 3601, 50101, 40000, 4242, 1000.0, 7001, command="python app.py"
    )
    lines = format_table([inst], now=1012.0).splitlines()
    assert lines[0].split("  ")[0] == "APP ID" and "COMMAND" in lines[0]
    row = ["orders", "3601", "50101", "7001", "4242", "12s", "python", "app.py"]
    assert lines[1].split() == row
