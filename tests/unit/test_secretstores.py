"""Behaviour specific to each secret store, beyond the shared conformance suite.

``secretstores.local.file``: flattening of nested objects and arrays, the
multi-valued layout, how JSON scalars become strings, and the start-up errors
for a missing, unreadable or malformed file. ``secretstores.local.env``: the
prefix, and that the sidecar's own ``DAPR_*`` and ``APP_API_TOKEN`` variables
are never exposed.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.secretstores.localenv import LocalEnvSecretStore
from daprlite.components.secretstores.localfile import LocalFileSecretStore

NESTED = {
    "redisPassword": "r3d1s",
    "connectionStrings": {"sql": "Server=db;Password=x", "mysql": "user:pw@tcp(db)/app"},
    "db": {"primary": {"host": "db1", "port": 5432}},
    "hosts": ["a.example", {"name": "b.example", "tls": True}],
}


async def file_store(tmp_path: Path, content: object | str, **props: str) -> LocalFileSecretStore:
    path = tmp_path / "secrets.json"
    text = content if isinstance(content, str) else json.dumps(content)
    path.write_text(text, encoding="utf-8")
    store = LocalFileSecretStore()
    props = {"secretsFile": str(path), **props}
    await store.init(
        ComponentMetadata(name="files", type="secretstores.local.file", properties=props)
    )
    return store


async def init_error(properties: Mapping[str, str]) -> MetadataError:
    store = LocalFileSecretStore()
    meta = ComponentMetadata(name="files", type="secretstores.local.file", properties=properties)
    with pytest.raises(MetadataError) as info:
        await store.init(meta)
    return info.value


async def env_store(prefix: str = "") -> LocalEnvSecretStore:
    store = LocalEnvSecretStore()
    props = {"prefix": prefix} if prefix else {}
    await store.init(ComponentMetadata(name="env", type="secretstores.local.env", properties=props))
    return store


def unique_prefix() -> str:
    return f"DLUNIT_{uuid.uuid4().hex[:8].upper()}_"


# -- secretstores.local.file: layout ---------------------------------------------------


async def test_nested_objects_and_arrays_flatten_with_the_default_colon(tmp_path: Path) -> None:
    store = await file_store(tmp_path, NESTED)
    assert await store.bulk_get_secret({}) == {
        k: {k: v}
        for k, v in {
            "redisPassword": "r3d1s",
            "connectionStrings:sql": "Server=db;Password=x",
            "connectionStrings:mysql": "user:pw@tcp(db)/app",
            "db:primary:host": "db1",
            "db:primary:port": "5432",
            "hosts:0": "a.example",
            "hosts:1:name": "b.example",
            "hosts:1:tls": "true",
        }.items()
    }
    assert await store.get_secret("connectionStrings:sql", {}) == {
        "connectionStrings:sql": "Server=db;Password=x"
    }


async def test_custom_nested_separator_joins_keys_and_array_indexes(tmp_path: Path) -> None:
    store = await file_store(tmp_path, NESTED, nestedSeparator="__")
    assert await store.get_secret("db__primary__port", {}) == {"db__primary__port": "5432"}
    assert await store.get_secret("hosts__1__name", {}) == {"hosts__1__name": "b.example"}
    with pytest.raises(ComponentError, match="secret db:primary:port not found"):
        await store.get_secret("db:primary:port", {})


async def test_empty_nested_separator_means_the_default_colon(tmp_path: Path) -> None:
    store = await file_store(tmp_path, NESTED, nestedSeparator="")
    assert await store.get_secret("db:primary:host", {}) == {"db:primary:host": "db1"}


async def test_a_parent_object_is_not_a_secret_when_single_valued(tmp_path: Path) -> None:
    store = await file_store(tmp_path, NESTED)
    assert store.features() == frozenset()
    with pytest.raises(ComponentError, match="secret connectionStrings not found"):
        await store.get_secret("connectionStrings", {})


async def test_scalars_become_their_json_text_as_written(tmp_path: Path) -> None:
    text = '{"int": 42, "neg": -7, "float": 1.50, "exp": 1e3, "t": true, "f": false, "n": null}'
    store = await file_store(tmp_path, text)
    values = {name: v[name] for name, v in (await store.bulk_get_secret({})).items()}
    # null is "no value": an empty string, not the word "null".
    assert values == {
        "int": "42", "neg": "-7", "float": "1.50", "exp": "1e3", "t": "true", "f": "false", "n": ""
    }  # fmt: skip


async def test_multi_valued_top_level_keys_are_secrets_with_flattened_maps(
    tmp_path: Path,
) -> None:
    store = await file_store(tmp_path, NESTED, multiValued="true")
    assert store.features() == frozenset({"MULTIPLE_KEY_VALUES_PER_SECRET"})
    assert await store.get_secret("connectionStrings", {}) == {
        "sql": "Server=db;Password=x",
        "mysql": "user:pw@tcp(db)/app",
    }
    assert await store.get_secret("db", {}) == {"primary:host": "db1", "primary:port": "5432"}
    assert await store.get_secret("hosts", {}) == {
        "0": "a.example",
        "1:name": "b.example",
        "1:tls": "true",
    }
    # A top-level scalar stays a single-valued secret.
    assert await store.get_secret("redisPassword", {}) == {"redisPassword": "r3d1s"}
    with pytest.raises(ComponentError, match="secret connectionStrings:sql not found"):
        await store.get_secret("connectionStrings:sql", {})


async def test_multi_valued_bulk_returns_each_secret_map(tmp_path: Path) -> None:
    content = {"redis": {"password": "p", "tls": {"ca": "c"}}, "token": "t", "none": {}}
    store = await file_store(tmp_path, content, multiValued="yes", nestedSeparator=".")
    assert await store.bulk_get_secret({}) == {
        "redis": {"password": "p", "tls.ca": "c"},
        "token": {"token": "t"},
        "none": {},
    }


async def test_file_is_read_once_at_init(tmp_path: Path) -> None:
    store = await file_store(tmp_path, {"a": "before"})
    (tmp_path / "secrets.json").write_text('{"a": "after"}', encoding="utf-8")
    assert await store.get_secret("a", {}) == {"a": "before"}


async def test_relative_secrets_file_is_found_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "local.json").write_text('{"k": "v"}', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    store = LocalFileSecretStore()
    props = {"SECRETSFILE": "conf/local.json"}  # metadata names are case-insensitive
    await store.init(ComponentMetadata(name="f", type="secretstores.local.file", properties=props))
    assert await store.get_secret("k", {}) == {"k": "v"}


async def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"k": "v"}')
    store = LocalFileSecretStore()
    meta = ComponentMetadata(name="f", type="t", properties={"secretsFile": str(path)})
    await store.init(meta)
    assert await store.get_secret("k", {}) == {"k": "v"}


async def test_load_is_logged_with_the_count_but_never_a_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="daprlite.component.secretstores"):
        await file_store(tmp_path, NESTED)
    assert "files" in caplog.text and "8 secrets" in caplog.text
    assert "r3d1s" not in caplog.text and "Password=x" not in caplog.text


# -- secretstores.local.file: bad files and metadata -----------------------------------


async def test_missing_secrets_file_metadata_is_refused() -> None:
    error = await init_error({})
    assert error.field == "secretsFile"
    assert "required" in str(error)


async def test_missing_file_names_secrets_file_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "secrets.json"
    error = await init_error({"secretsFile": str(missing)})
    assert error.field == "secretsFile"
    assert str(missing) in str(error)
    assert "No such file" in str(error)


async def test_a_directory_instead_of_a_file_names_secrets_file(tmp_path: Path) -> None:
    error = await init_error({"secretsFile": str(tmp_path)})
    assert error.field == "secretsFile"
    assert str(tmp_path) in str(error)


async def test_invalid_json_names_the_path_and_position_but_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "password": "hunter2"\n  "other": "x"\n}', encoding="utf-8")
    error = await init_error({"secretsFile": str(path)})
    assert error.field == "secretsFile"
    assert str(path) in str(error)
    assert "line 3 column 3" in str(error)
    assert "hunter2" not in str(error)


async def test_empty_file_is_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("", encoding="utf-8")
    error = await init_error({"secretsFile": str(path)})
    assert error.field == "secretsFile"
    assert "not valid JSON" in str(error) and "line 1 column 1" in str(error)


@pytest.mark.parametrize("content", ['["a", "b"]', '"just a string"', "42"])
async def test_top_level_must_be_an_object(tmp_path: Path, content: str) -> None:
    path = tmp_path / "top.json"
    path.write_text(content, encoding="utf-8")
    error = await init_error({"secretsFile": str(path)})
    assert error.field == "secretsFile"
    assert "expected a JSON object at the top level" in str(error)


async def test_nan_is_refused_as_not_json(tmp_path: Path) -> None:
    path = tmp_path / "nan.json"
    path.write_text('{"ratio": NaN}', encoding="utf-8")
    error = await init_error({"secretsFile": str(path)})
    assert error.field == "secretsFile"
    assert "NaN is not valid JSON" in str(error)


async def test_file_that_is_not_utf8_names_secrets_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"k": "café"}'.encode("latin-1"))
    error = await init_error({"secretsFile": str(path)})
    assert error.field == "secretsFile"
    assert "not UTF-8" in str(error)


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ('{"a": "1", "a": "2"}', "a"),
        ('{"a:b": "1", "a": {"b": "2"}}', "a:b"),
        ('{"x": {"0": "1"}, "x:0": "2"}', "x:0"),
    ],
)
async def test_a_key_defined_twice_is_refused(tmp_path: Path, content: str, key: str) -> None:
    path = tmp_path / "dup.json"
    path.write_text(content, encoding="utf-8")
    error = await init_error({"secretsFile": str(path)})
    assert error.field == "secretsFile"
    assert f"{key!r} is defined more than once" in str(error)


async def test_a_top_level_secret_defined_twice_is_refused_when_multi_valued(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"s": {"a": "1"}, "s": {"b": "2"}}', encoding="utf-8")
    error = await init_error({"secretsFile": str(path), "multiValued": "true"})
    assert error.field == "secretsFile"
    assert "'s' is defined more than once" in str(error)


async def test_bad_multi_valued_flag_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text("{}", encoding="utf-8")
    error = await init_error({"secretsFile": str(path), "multiValued": "sometimes"})
    assert error.field == "multiValued"


# -- secretstores.local.env ------------------------------------------------------------


async def test_env_prefix_is_added_to_get_and_stripped_from_bulk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique_prefix()
    monkeypatch.setenv(f"{prefix}DB_PASSWORD", "pw")
    monkeypatch.setenv(f"{prefix}token", "t")
    store = await env_store(prefix)
    assert await store.get_secret("DB_PASSWORD", {}) == {"DB_PASSWORD": "pw"}
    with pytest.raises(ComponentError, match="not found"):
        await store.get_secret(f"{prefix}DB_PASSWORD", {})
    assert await store.bulk_get_secret({}) == {
        "DB_PASSWORD": {"DB_PASSWORD": "pw"},
        "token": {"token": "t"},
    }


async def test_env_prefix_is_case_sensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = unique_prefix()
    monkeypatch.setenv(f"{prefix.lower()}lower", "x")
    store = await env_store(prefix)
    assert await store.bulk_get_secret({}) == {}


async def test_env_variable_named_exactly_the_prefix_is_not_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique_prefix()
    monkeypatch.setenv(prefix, "orphan")
    store = await env_store(prefix)
    assert await store.bulk_get_secret({}) == {}
    with pytest.raises(ComponentError, match=r"^secret  not found$"):
        await store.get_secret("", {})


async def test_env_unset_variable_fails_instead_of_returning_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = unique_prefix()
    monkeypatch.delenv(f"{prefix}MISSING", raising=False)
    store = await env_store(prefix)
    with pytest.raises(ComponentError, match=r"^secret MISSING not found$"):
        await store.get_secret("MISSING", {})


async def test_env_reads_variables_live(monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = unique_prefix()
    store = await env_store(prefix)
    monkeypatch.setenv(f"{prefix}LATE", "set after init")
    assert await store.get_secret("LATE", {}) == {"LATE": "set after init"}


@pytest.mark.parametrize(
    "variable", ["DAPR_API_TOKEN", "APP_API_TOKEN", "DAPR_HTTP_PORT", "dapr_api_token"]
)
async def test_env_never_exposes_the_sidecars_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "sidecar-only-value")
    store = await env_store()
    with pytest.raises(ComponentError, match=rf"^secret {variable} not found$"):
        await store.get_secret(variable, {})
    bulk = await store.bulk_get_secret({})
    assert variable not in bulk
    assert "sidecar-only-value" not in str(bulk)


async def test_env_reserved_names_stay_hidden_behind_a_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With prefix "DA", the secret "PR_API_TOKEN" would be the variable DAPR_API_TOKEN.
    monkeypatch.setenv("DAPR_API_TOKEN", "sidecar-only-value")
    store = await env_store("DA")
    with pytest.raises(ComponentError, match="not found"):
        await store.get_secret("PR_API_TOKEN", {})
    assert "PR_API_TOKEN" not in await store.bulk_get_secret({})


async def test_env_bulk_without_prefix_returns_the_ordinary_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique_prefix() + "PLAIN"
    monkeypatch.setenv(name, "v")
    monkeypatch.setenv("DAPR_API_TOKEN", "sidecar-only-value")
    bulk = await (await env_store()).bulk_get_secret({})
    assert bulk[name] == {name: "v"}
    assert not any(k.upper().startswith("DAPR_") or k.upper() == "APP_API_TOKEN" for k in bulk)
    assert "PATH" in bulk and bulk["PATH"] == {"PATH": os.environ["PATH"]}


@pytest.mark.parametrize("prefix", ["DAPR_", "dapr_my_"])
async def test_env_prefix_inside_dapr_namespace_is_refused(prefix: str) -> None:
    store = LocalEnvSecretStore()
    meta = ComponentMetadata(
        name="env", type="secretstores.local.env", properties={"prefix": prefix}
    )
    with pytest.raises(MetadataError) as info:
        await store.init(meta)
    assert info.value.field == "prefix"
    assert "reserved" in str(info.value)
