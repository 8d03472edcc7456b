"""The app started by ``daprlite run`` gets Dapr's variables and none of daprlite's own."""

from __future__ import annotations

import os

import pytest

from daprlite.cli.run import app_environment
from daprlite.config.options import Options
from daprlite.runtime.sidecar import BoundPorts, Sidecar


def test_app_environment_has_dapr_variables_and_not_our_grpc_setting() -> None:
    import daprlite.cli  # noqa: F401 - sets the gRPC fork setting for the sidecar process

    sidecar = Sidecar(Options(app_id="envcheck", app_port=8123))
    sidecar.ports = BoundPorts(41000, 41001)
    env = app_environment(sidecar.options, sidecar)
    assert env["APP_ID"] == "envcheck" and env["APP_PORT"] == "8123"
    assert env["DAPR_HTTP_PORT"] == "41000" and env["DAPR_GRPC_PORT"] == "41001"
    if os.environ.get("DAPRLITE_GRPC_FORK_SUPPORT_SET"):
        assert "GRPC_ENABLE_FORK_SUPPORT" not in env
    assert "DAPRLITE_GRPC_FORK_SUPPORT_SET" not in env


@pytest.mark.parametrize("app_id", ["with.dot", "with space", "-dash", "semi;colon"])
def test_app_ids_that_other_apps_could_not_address_are_refused(
    app_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from daprlite.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--app-id", app_id, "--resources-path", "."])
    assert exit_info.value.code == 2
    assert "--app-id" in capsys.readouterr().err
