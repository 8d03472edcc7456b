"""``spec.nameResolution`` of Configuration files: parsed, merged and validated.

The files are real YAML read by the resource loader, as ``--config`` would.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from daprlite.config.configuration import NameResolutionSpec, build_configuration
from daprlite.config.resources import Resource, ResourceError, ResourceLoader, Resources


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPRLITE_HOME", str(tmp_path))


def configurations(tmp_path: Path, *specs: str) -> list[Resource]:
    """One Configuration file per spec body (YAML under ``spec:``), loaded in order."""
    out = Resources()
    for i, spec in enumerate(specs):
        path = tmp_path / f"config{i}.yaml"
        body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
        path.write_text(
            f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\n"
            f"metadata:\n  name: config{i}\nspec:\n{body}\n"
        )
        ResourceLoader("app").load_file(path, out)
    return out.configurations


def test_name_resolution_is_absent_without_the_section(tmp_path: Path) -> None:
    res = configurations(tmp_path, "tracing:\n  samplingRate: '1'")
    assert build_configuration(res).name_resolution is None


def test_name_resolution_keeps_component_version_and_free_form_configuration(
    tmp_path: Path,
) -> None:
    res = configurations(
        tmp_path,
        """
        nameResolution:
          component: static
          version: v1
          configuration:
            apps:
              - appId: orders
                host: 10.0.0.5
                internalPort: 50002
        """,
    )
    assert build_configuration(res).name_resolution == NameResolutionSpec(
        component="static",
        version="v1",
        configuration={"apps": [{"appId": "orders", "host": "10.0.0.5", "internalPort": 50002}]},
    )


def test_name_resolution_without_configuration_or_version_gets_empty_ones(tmp_path: Path) -> None:
    res = configurations(tmp_path, "nameResolution:\n  component: mdns")
    assert build_configuration(res).name_resolution == NameResolutionSpec("mdns", "", {})


def test_a_later_document_replaces_name_resolution_and_an_absent_one_keeps_it(
    tmp_path: Path,
) -> None:
    res = configurations(
        tmp_path,
        "nameResolution:\n  component: static\n  configuration:\n    apps: []",
        "nameResolution:\n  component: kubernetes",
        "secrets:\n  scopes: []",
    )
    assert build_configuration(res).name_resolution == NameResolutionSpec("kubernetes", "", {})


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("nameResolution: mdns", "spec.nameResolution"),
        ("nameResolution:\n  component: [mdns]", "spec.nameResolution.component"),
        ("nameResolution:\n  component: static\n  version: 1", "spec.nameResolution.version"),
        (
            "nameResolution:\n  component: static\n  configuration: [a]",
            "spec.nameResolution.configuration",
        ),
    ],
)
def test_bad_name_resolution_is_a_resource_error_naming_the_field(
    tmp_path: Path, spec: str, field: str
) -> None:
    res = configurations(tmp_path, spec)
    with pytest.raises(ResourceError) as info:
        build_configuration(res)
    assert info.value.field == field
    assert "config0.yaml" in str(info.value)
