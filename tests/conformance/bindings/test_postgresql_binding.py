"""``bindings.postgresql`` against the real PostgreSQL server of ``tests/services.py``.

Each test gets its own table (a random name), created through the binding and
dropped afterwards by a direct asyncpg connection, which the tests also use to
check what really reached the database.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import pytest

from daprlite.components.bindings._postgresql_values import go_duration
from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
    UnsupportedOperationError,
)
from daprlite.components.bindings.postgresql import (
    PostgreSQLBinding,
    PostgreSQLBindingSettings,
    SQLError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode
from daprlite.components.registry import Registry
from tests.services import POSTGRES_DSN

INJECTION = "'; DROP TABLE {table}; --"


@dataclass
class Database:
    binding: PostgreSQLBinding
    direct: asyncpg.Connection  # checks what really reached the database
    table: str

    async def run(self, operation: str, sql: str, params: object = None) -> InvokeResponse:
        metadata = {"sql": sql.replace("{table}", self.table)}
        if params is not None:
            metadata["params"] = params if isinstance(params, str) else json.dumps(params)
        return await self.binding.invoke(InvokeRequest(operation, b"", metadata))

    async def rows(self, sql: str, params: object = None) -> list[list[object]]:
        resp = await self.run("query", sql, params)
        return list(json.loads(resp.data or b""))

    async def table_exists(self) -> bool:
        return bool(await self.direct.fetchval("SELECT to_regclass($1) IS NOT NULL", self.table))


def _meta(**props: str) -> ComponentMetadata:
    return ComponentMetadata(name="db", type="bindings.postgresql", properties=props)


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    table = f"binding_{uuid.uuid4().hex[:12]}"
    binding = PostgreSQLBinding()
    await binding.init(_meta(connectionString=POSTGRES_DSN))
    direct = await asyncpg.connect(POSTGRES_DSN)
    try:
        database = Database(binding, direct, table)
        await database.run(
            "exec", "CREATE TABLE {table} (id integer PRIMARY KEY, name text, score numeric)"
        )
        yield database
    finally:
        await binding.close()
        try:
            await direct.execute(f'DROP TABLE IF EXISTS "{table}"')
        finally:
            await direct.close()


# -- contract ------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["bindings.postgresql", "bindings.postgres"])
def test_both_registered_types_resolve_to_the_binding(ctype: str) -> None:
    assert Registry().resolve(ctype) is PostgreSQLBinding


async def test_binding_is_an_output_binding_listing_its_operations(db: Database) -> None:
    assert isinstance(db.binding, OutputBinding)
    assert set(db.binding.operations()) == {"exec", "query", "close"}


async def test_unsupported_operation_is_refused(db: Database) -> None:
    with pytest.raises(UnsupportedOperationError, match="supported operations"):
        await db.run("create", "SELECT 1")


# -- exec ------------------------------------------------------------------------------


async def test_exec_with_params_inserts_and_reports_rows_affected(db: Database) -> None:
    resp = await db.run(
        "exec", "INSERT INTO {table} VALUES ($1, $2, $3), ($4, $5, $6)", [1, "a", 1.5, 2, "b", 2]
    )
    assert resp.metadata["rows-affected"] == "2"
    assert resp.data is None
    got = await db.direct.fetch(f"SELECT id, name FROM {db.table} ORDER BY id")
    assert [tuple(r) for r in got] == [(1, "a"), (2, "b")]


async def test_rows_affected_counts_updates_and_deletes(db: Database) -> None:
    for i in range(5):
        await db.run("exec", "INSERT INTO {table} (id, name) VALUES ($1, $2)", [i, "x"])
    resp = await db.run("exec", "UPDATE {table} SET name = $1 WHERE id >= $2", ["y", 2])
    assert resp.metadata["rows-affected"] == "3"
    resp = await db.run("exec", "DELETE FROM {table} WHERE id < $1", [1])
    assert resp.metadata["rows-affected"] == "1"
    resp = await db.run("exec", "DELETE FROM {table} WHERE id = $1", [99])
    assert resp.metadata["rows-affected"] == "0"


async def test_exec_of_ddl_reports_zero_rows(db: Database) -> None:
    resp = await db.run("exec", "CREATE INDEX ON {table} (name)")
    assert resp.metadata["rows-affected"] == "0"


async def test_exec_without_params_runs_a_script_of_several_statements(db: Database) -> None:
    await db.run("exec", "INSERT INTO {table} (id) VALUES (1); INSERT INTO {table} (id) VALUES (2)")
    assert await db.direct.fetchval(f"SELECT count(*) FROM {db.table}") == 2


async def test_every_response_carries_operation_sql_and_timing(db: Database) -> None:
    sql = "SELECT count(*) FROM {table}"
    for operation in ("exec", "query"):
        meta = (await db.run(operation, sql)).metadata
        assert meta["operation"] == operation
        assert meta["sql"] == sql.replace("{table}", db.table)
        start = datetime.fromisoformat(meta["start-time"])
        end = datetime.fromisoformat(meta["end-time"])
        assert meta["start-time"].endswith("Z") and meta["end-time"].endswith("Z")
        assert start <= end
        assert re.fullmatch(r"(\d+h)?(\d+m)?\d+(\.\d+)?(ns|µs|ms|s)", meta["duration"])


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (2_250_000, "2.25ms"),
        (1_000_000_000, "1s"),
        (61_500_000_000, "1m1.5s"),
        (3_600_000_000_000, "1h0m0s"),
        (-1_500_000, "-1.5ms"),
    ],
)
def test_durations_are_written_as_go_writes_them(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text


# -- query -----------------------------------------------------------------------------


async def test_query_returns_rows_as_json_arrays_filtered_by_params(db: Database) -> None:
    for i, name in enumerate(["ann", "bob", "cy"]):
        await db.run("exec", "INSERT INTO {table} (id, name) VALUES ($1, $2)", [i, name])
    rows = await db.rows("SELECT id, name FROM {table} WHERE id >= $1 ORDER BY id", [1])
    assert rows == [[1, "bob"], [2, "cy"]]
    assert await db.rows("SELECT id FROM {table} WHERE name = $1", ["nobody"]) == []


async def test_query_encodes_each_type_as_json(db: Database) -> None:
    rows = await db.rows(
        "SELECT 42, 2.5::float8, 12345678901234567890.000000001::numeric, true, NULL, "
        "'héllo ✓'::text, '2024-01-02 03:04:05.25+02'::timestamptz, "
        "'2024-01-02 03:04:05'::timestamp, '2024-01-02'::date, '\\x00ff10'::bytea, "
        """'{"a": [1, null]}'::jsonb, '6f1c0b5e-2b1a-4f7c-9d0e-123456789abc'::uuid, """
        "ARRAY[1, 2, 3], 'NaN'::float8"
    )
    assert rows == [
        [
            42,
            2.5,
            "12345678901234567890.000000001",  # numeric as a string: no digit lost
            True,
            None,
            "héllo ✓",
            "2024-01-02T01:04:05.25Z",  # RFC 3339 in UTC
            "2024-01-02T03:04:05Z",
            "2024-01-02",
            base64.b64encode(b"\x00\xff\x10").decode(),
            {"a": [1, None]},  # JSON columns embedded as JSON
            "6f1c0b5e-2b1a-4f7c-9d0e-123456789abc",
            [1, 2, 3],
            "NaN",  # not representable as a JSON number
        ]
    ]


async def test_string_params_are_converted_to_the_column_types(db: Database) -> None:
    await db.run(
        "exec",
        "CREATE TABLE {table}_typed (ts timestamptz, d date, u uuid, n numeric, j jsonb, b bool)",
    )
    try:
        params = ["2024-05-06T07:08:09Z", "2024-05-06", str(uuid.UUID(int=7)), "1.10", {"k": 1}]
        await db.run(
            "exec",
            "INSERT INTO {table}_typed VALUES ($1, $2, $3, $4, $5, $6)",
            [*params, "true"],
        )
        rows = await db.rows("SELECT * FROM {table}_typed")
        assert rows == [
            ["2024-05-06T07:08:09Z", "2024-05-06", str(uuid.UUID(int=7)), "1.10", {"k": 1}, True]
        ]
    finally:
        await db.direct.execute(f"DROP TABLE IF EXISTS {db.table}_typed")


async def test_query_of_many_rows_returns_them_all(db: Database) -> None:
    await db.run(
        "exec", "INSERT INTO {table} (id, name) SELECT g, 'n' || g FROM generate_series(1, 2000) g"
    )
    rows = await db.rows("SELECT id, name FROM {table} ORDER BY id")
    assert len(rows) == 2000
    assert rows[-1] == [2000, "n2000"]


# -- params are data, never SQL --------------------------------------------------------


async def test_injection_in_params_is_stored_as_data_and_the_table_survives(
    db: Database,
) -> None:
    attack = INJECTION.replace("{table}", db.table)
    await db.run("exec", "INSERT INTO {table} (id, name) VALUES ($1, $2)", [1, attack])
    assert await db.table_exists()
    assert await db.direct.fetchval(f"SELECT name FROM {db.table} WHERE id = 1") == attack
    assert await db.rows("SELECT name FROM {table} WHERE name = $1", [attack]) == [[attack]]


async def test_injection_in_a_where_param_matches_nothing(db: Database) -> None:
    await db.run("exec", "INSERT INTO {table} (id, name) VALUES (1, 'a'), (2, 'b')")
    rows = await db.rows("SELECT id FROM {table} WHERE name = $1", ["x' OR '1'='1"])
    assert rows == []
    resp = await db.run("exec", "DELETE FROM {table} WHERE name = $1", ["a' OR 'x'='x"])
    assert resp.metadata["rows-affected"] == "0"
    assert await db.direct.fetchval(f"SELECT count(*) FROM {db.table}") == 2


# -- bad requests ----------------------------------------------------------------------


@pytest.mark.parametrize("params", ["not json", "[1,", '{"a": 1}', '"one"', "42"])
async def test_params_that_are_not_a_json_array_are_an_error_naming_params(
    db: Database, params: str
) -> None:
    with pytest.raises(MetadataError) as err:
        await db.run("exec", "INSERT INTO {table} (id) VALUES ($1)", params)
    assert err.value.field == "params"
    assert await db.direct.fetchval(f"SELECT count(*) FROM {db.table}") == 0


@pytest.mark.parametrize("value", ["abc", 2**40, True, [1]])
async def test_a_value_that_does_not_fit_its_column_is_an_error_naming_params(
    db: Database, value: object
) -> None:
    with pytest.raises(MetadataError) as err:
        await db.run("exec", "INSERT INTO {table} (id) VALUES ($1)", [value])
    assert err.value.field == "params"
    assert "$1" in str(err.value)
    assert await db.direct.fetchval(f"SELECT count(*) FROM {db.table}") == 0


async def test_missing_sql_is_an_error_naming_sql(db: Database) -> None:
    for metadata in ({}, {"sql": "  "}):
        with pytest.raises(MetadataError) as err:
            await db.binding.invoke(InvokeRequest("query", b"", metadata))
        assert err.value.field == "sql"


async def test_sql_syntax_error_is_a_client_sql_error_with_the_servers_message(
    db: Database,
) -> None:
    with pytest.raises(SQLError) as err:
        await db.run("exec", "SELEC * FROM {table}")
    assert err.value.client_error is True
    assert 'syntax error at or near "SELEC"' in str(err.value)
    assert "42601" in str(err.value)


@pytest.mark.parametrize("params", [[1], [1, 2, 3]])
async def test_wrong_number_of_params_is_a_client_sql_error(
    db: Database, params: list[int]
) -> None:
    with pytest.raises(SQLError) as err:
        await db.run("query", "SELECT id FROM {table} WHERE id = $1 OR id = $2", params)
    assert err.value.client_error is True
    assert "parameter" in str(err.value)


async def test_placeholder_without_params_is_a_client_sql_error(db: Database) -> None:
    with pytest.raises(SQLError, match=r"no parameter \$1"):
        await db.run("exec", "INSERT INTO {table} (id) VALUES ($1)")


async def test_unknown_table_is_a_client_sql_error(db: Database) -> None:
    with pytest.raises(SQLError, match="does not exist"):
        await db.run("query", "SELECT * FROM {table}_missing")


async def test_constraint_violation_is_a_client_error_without_the_row_data(db: Database) -> None:
    await db.run("exec", "INSERT INTO {table} (id, name) VALUES ($1, $2)", [7, "x"])
    with pytest.raises(SQLError) as err:
        await db.run("exec", "INSERT INTO {table} (id, name) VALUES ($1, $2)", [7, "y"])
    assert "duplicate key" in str(err.value)
    assert "(id)=(7)" not in str(err.value)  # the DETAIL quotes row data: left out


async def test_a_statement_over_the_timeout_fails_and_the_binding_keeps_working() -> None:
    binding = PostgreSQLBinding()
    await binding.init(_meta(connectionString=POSTGRES_DSN, timeout="1s"))
    try:
        with pytest.raises(ComponentError, match="timed out after 1s") as err:
            await binding.invoke(InvokeRequest("query", b"", {"sql": "SELECT pg_sleep(3)"}))
        assert not isinstance(err.value, SQLError)
        resp = await binding.invoke(InvokeRequest("query", b"", {"sql": "SELECT 1"}))
        assert json.loads(resp.data or b"") == [[1]]
    finally:
        await binding.close()


# -- close -----------------------------------------------------------------------------


async def test_close_operation_closes_the_pool_and_the_next_call_reopens_it(
    db: Database,
) -> None:
    await db.run("exec", "INSERT INTO {table} (id) VALUES ($1)", [1])
    pid_before = (await db.rows("SELECT pg_backend_pid()"))[0][0]
    resp = await db.binding.invoke(InvokeRequest("close", b"", {}))
    assert resp.data is None
    # The server no longer has that connection.
    alive = await db.direct.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid_before
    )
    assert alive == 0
    assert await db.rows("SELECT id FROM {table}") == [[1]]
    await db.binding.invoke(InvokeRequest("close", b"", {}))
    await db.binding.invoke(InvokeRequest("close", b"", {}))  # closing twice is fine


async def test_calls_after_component_close_fail_clearly(db: Database) -> None:
    await db.binding.close()
    with pytest.raises(ComponentError, match="closed"):
        await db.run("query", "SELECT 1")


# -- configuration -----------------------------------------------------------------------


async def test_missing_connection_string_fails_init_naming_it() -> None:
    with pytest.raises(MetadataError) as err:
        await PostgreSQLBinding().init(_meta())
    assert err.value.field == "connectionString"


@pytest.mark.parametrize(("field", "value"), [("timeout", "0s"), ("maxConns", "0")])
def test_bad_settings_are_errors_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(MetadataError) as err:
        decode(PostgreSQLBindingSettings, {"connectionString": POSTGRES_DSN, field: value})
    assert err.value.field == field


def test_settings_repr_hides_the_connection_string() -> None:
    s = decode(PostgreSQLBindingSettings, {"connectionString": "host=db password=s3cr3t"})
    assert "s3cr3t" not in repr(s)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_fails_init_without_the_password() -> None:
    port = _closed_port()
    binding = PostgreSQLBinding()
    conn = f"host=127.0.0.1 port={port} user=app password=s3cr3t-pw dbname=x connect_timeout=2"
    with pytest.raises(ComponentError) as err:
        await binding.init(_meta(connectionString=conn))
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)
    await binding.close()


async def test_key_value_connection_string_works_too() -> None:
    keyvalue = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    if not POSTGRES_DSN.startswith("postgres://postgres@127.0.0.1:5432/"):
        pytest.skip("the key=value form is spelled for the default test server only")
    binding = PostgreSQLBinding()
    await binding.init(_meta(connectionString=keyvalue))
    try:
        resp = await binding.invoke(InvokeRequest("query", b"", {"sql": "SELECT 1"}))
        assert json.loads(resp.data or b"") == [[1]]
    finally:
        await binding.close()
