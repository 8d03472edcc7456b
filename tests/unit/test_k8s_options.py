"""``--mode kubernetes`` as flags and environment resolve it, and the implicit secret store."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from daprlite.cli.flags import add_sidecar_flags, options_from
from daprlite.config.options import Options
from daprlite.config.resources import Component, Resources
from daprlite.kubernetes.client import api_client
from daprlite.kubernetes.mode import KubernetesMode, held_reason
from daprlite.kubernetes.resources import ClusterResources
from tests.k8sapi import K8sAPI, running


def _options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser()
    add_sidecar_flags(parser, 0, 0)
    return options_from(parser.parse_args(argv), "app", [])


def test_standalone_is_the_default_and_config_stays_a_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAPRLITE_MODE", raising=False)
    opts = _options(["--config", "~/config.yaml"])
    assert opts.mode == "standalone"
    assert opts.config_files == (Path("~/config.yaml").expanduser(),)
    assert opts.config_names == ()


def test_kubernetes_mode_makes_config_the_name_of_a_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DAPRLITE_MODE", raising=False)
    opts = _options(["--mode", "kubernetes", "--config", "appconfig"])
    assert opts.mode == "kubernetes"
    assert opts.config_names == ("appconfig",)
    assert opts.config_files == ()


def test_daprlite_mode_env_sets_the_mode_and_the_flag_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAPRLITE_MODE", "Kubernetes")
    assert _options([]).mode == "kubernetes"
    assert _options(["--mode", "standalone"]).mode == "standalone"


def test_unknown_daprlite_mode_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAPRLITE_MODE", "swarm")
    with pytest.raises(SystemExit, match="DAPRLITE_MODE='swarm': expected one of"):
        _options([])


def test_unknown_mode_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _options(["--mode", "swarm"])
    assert info.value.code == 2
    assert "--mode" in capsys.readouterr().err


def test_kubernetes_mode_does_not_need_a_default_resources_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daprlite.cli.main import _parser, _resources

    monkeypatch.setenv("DAPRLITE_HOME", str(tmp_path))  # no components folder there
    monkeypatch.delenv("DAPRLITE_MODE", raising=False)
    args = _parser().parse_args(["run", "--mode", "kubernetes"])
    assert _resources(args, required_default=True) == []


@pytest.mark.parametrize(
    ("category", "name", "held"),
    [
        ("state", "store", False),
        ("secretstores", "vault", False),
        ("pubsub", "idle-bus", False),
        ("pubsub", "bus", True),
        ("bindings", "outbound-only", False),
        ("bindings", "queue", True),
        ("middleware.http", "ratelimit", True),
        ("nameresolution", "dns", True),
    ],
)
def test_components_the_sidecar_holds_on_to_are_not_swapped(
    category: str, name: str, held: bool
) -> None:
    reason = held_reason(category, name, ["bus"], ["queue"])
    assert bool(reason) is held


@pytest.fixture
def api() -> Iterator[K8sAPI]:
    with running() as server:
        yield server


async def test_implicit_kubernetes_secret_store_unless_one_is_declared(
    api: K8sAPI, tmp_path: Path
) -> None:
    client = await api_client(str(api.write_kubeconfig(tmp_path / "kubeconfig", "ns")))
    try:
        mode = KubernetesMode(ClusterResources(client, "ns", "app"))
        resources = Resources()
        await mode.load_into(resources, ())
        assert [(c.name, c.type) for c in resources.components] == [
            ("kubernetes", "secretstores.kubernetes")
        ]
        declared = Component("kubernetes", "secretstores.local.env", "v1", (), "secrets.yaml")
        resources = Resources(components=[declared])
        await mode.load_into(resources, ())
        assert resources.components == [declared]
    finally:
        await client.close()
