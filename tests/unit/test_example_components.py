"""Every example in components/ parses: components name a registered type, other kinds build."""

from __future__ import annotations

from pathlib import Path

import pytest

from daprlite.blocks.invoke.external import load_endpoints
from daprlite.components.nameresolution.api import ResolveRequest, SelfInfo
from daprlite.components.nameresolution.loader import open_resolver
from daprlite.components.registry import Registry
from daprlite.config.configuration import build_configuration
from daprlite.config.resources import ResourceLoader, Resources
from daprlite.resiliency import Resiliency

EXAMPLES = sorted((Path(__file__).parents[2] / "components").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 13


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
async def test_example_parses_and_its_type_is_registered(path: Path) -> None:
    loaded = Resources()
    ResourceLoader("example").load_file(path, loaded)
    assert path.name in (Path(__file__).parents[2] / "components" / "README.md").read_text()
    if loaded.resiliencies:
        assert Resiliency.build(loaded.resiliencies).names == ("myresiliency",)
        return
    if loaded.http_endpoints:

        async def no_secrets(store: str, name: str) -> dict[str, str]:
            raise LookupError(name)

        assert await load_endpoints(loaded.http_endpoints, no_secrets)
        return
    if loaded.configurations:
        config = build_configuration(loaded.configurations)
        handlers = (*config.http_pipeline, *config.app_http_pipeline)
        if handlers:
            assert {h.type for h in handlers} <= set(Registry().known_types())
            return
        assert config.name_resolution is not None
        me = SelfInfo("example", "", "127.0.0.1", 1, 2, 3)
        resolver = await open_resolver(config.name_resolution, me)
        try:
            address = await resolver.resolve(ResolveRequest("orders"))
        finally:
            await resolver.close()
        assert (address.host, address.internal_port) == ("10.0.0.5", 50002)
        return
    assert len(loaded.components) == 1
    comp = loaded.components[0]
    assert comp.type in Registry().known_types()
