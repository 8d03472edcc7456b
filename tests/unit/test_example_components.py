"""Every example in components/ parses and names a registered component type."""

from __future__ import annotations

from pathlib import Path

import pytest

from daprlite.components.registry import Registry
from daprlite.config.resources import ResourceLoader, Resources

EXAMPLES = sorted((Path(__file__).parents[2] / "components").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 13


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_its_type_is_registered(path: Path) -> None:
    loaded = Resources()
    ResourceLoader("example").load_file(path, loaded)
    assert len(loaded.components) == 1
    comp = loaded.components[0]
    assert comp.type in Registry().known_types()
    assert path.name in (Path(__file__).parents[2] / "components" / "README.md").read_text()
