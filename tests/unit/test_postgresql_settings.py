"""``state.postgresql`` settings, connection strings and table names, without a server."""

from __future__ import annotations

import re

import pytest

from daprlite.components._postgresql_common import (
    connect_options,
    parse_conninfo,
    ssl_context,
)
from daprlite.components.errors import MetadataError
from daprlite.components.metadata import decode
from daprlite.components.state._postgresql_sql import escape_like, quote_table, select_query
from daprlite.components.state.postgresql import PostgreSQLSettings
from daprlite.components.state.query import parse_query

DSN = "host=db user=app password=s3cret dbname=state"


def _settings(**props: str) -> PostgreSQLSettings:
    return decode(PostgreSQLSettings, {"connectionString": DSN, **props})


# -- settings ----------------------------------------------------------------------------


def test_defaults_match_dapr_v1() -> None:
    s = _settings()
    assert s.tableName == "state"
    assert s.metadataTableName == "dapr_metadata"
    assert s.timeout == 20
    assert s.cleanupInterval == 3600
    assert s.maxConns is None  # pool_max_conns, else max(4, CPUs), decided at init
    assert s.connectionMaxIdleTime is None


def test_names_are_case_insensitive_and_accept_go_durations() -> None:
    s = decode(
        PostgreSQLSettings,
        {
            "CONNECTIONSTRING": DSN,
            "tablename": "myschema.orders",
            "Timeout": "1m30s",
            "cleanupinterval": "500ms",
            "MAXCONNS": "7",
            "connectionMaxIdleTime": "2m",
        },
    )
    assert s.tableName == "myschema.orders"
    assert s.timeout == 90
    assert s.cleanupInterval == 0.5
    assert s.maxConns == 7
    assert s.connectionMaxIdleTime == 120


def test_legacy_second_aliases_are_accepted() -> None:
    s = _settings(timeoutInSeconds="5", cleanupIntervalInSeconds="0")
    assert s.timeout == 5
    assert s.cleanupInterval == 0  # disabled


def test_missing_connection_string_names_the_key() -> None:
    with pytest.raises(MetadataError) as err:
        decode(PostgreSQLSettings, {"tableName": "state"})
    assert err.value.field == "connectionString"


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"timeout": "0s"}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"maxConns": "0"}, "maxConns"),
        ({"maxConns": "many"}, "maxConns"),
        ({"queryExecMode": "turbo"}, "queryExecMode"),
    ],
)
def test_bad_values_name_the_key(props: dict[str, str], field: str) -> None:
    with pytest.raises(MetadataError) as err:
        _settings(**props)
    assert err.value.field == field


def test_settings_repr_hides_the_connection_string() -> None:
    text = repr(_settings())
    assert "s3cret" not in text
    assert "connectionString=<redacted>" in text


# -- table names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "state; drop table x",
        "state;drop table x",
        'state" ; DROP TABLE x; --',
        "a.b.c",
        "1state",
        "my-table",
        "my table",
        "",
        "schema.",
        ".table",
        "x" * 64,
    ],
)
@pytest.mark.parametrize("field", ["tableName", "metadataTableName"])
def test_unsafe_table_names_are_refused(name: str, field: str) -> None:
    with pytest.raises(MetadataError) as err:
        _settings(**{field: name})
    assert err.value.field == field


def test_table_names_are_quoted_with_optional_schema() -> None:
    assert quote_table("state") == '"state"'
    assert quote_table("Tenant_1.State") == '"Tenant_1"."State"'
    assert quote_table("user") == '"user"'  # reserved words are fine once quoted


# -- key=value connection strings ----------------------------------------------------------------


def test_key_value_pairs_allow_spaces_around_equals_and_quoted_values() -> None:
    params = parse_conninfo(r"host = db  port=5433 password='it\'s a \\ secret' user=a\ b")
    assert params == {
        "host": "db",
        "port": "5433",
        "password": "it's a \\ secret",
        "user": "a b",
    }


def test_empty_quoted_value_is_empty() -> None:
    assert parse_conninfo("password='' user=u") == {"password": "", "user": "u"}


def test_unterminated_quote_names_the_option_but_not_its_value() -> None:
    with pytest.raises(MetadataError) as err:
        connect_options("host=db password='s3cret user=u")
    assert err.value.field == "connectionString"
    assert "'password'" in str(err.value)
    assert "s3cret" not in str(err.value)


def test_unquoted_space_in_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(MetadataError) as err:
        connect_options("host=db password=top secret user=u")
    assert "secret" not in str(err.value)
    assert "single quotes" in str(err.value)


def test_key_value_string_becomes_asyncpg_keyword_arguments() -> None:
    opts = connect_options(
        "host=db1,db2 port=5432,5433 user=app password=s3cret database=orders "
        "connect_timeout=10 sslmode=verify-full target_session_attrs=read-write "
        "application_name=shop options='-c search_path=tenant1 --statement_timeout=5000'"
    )
    kwargs = opts.connect_kwargs()
    assert kwargs["host"] == ["db1", "db2"]
    assert kwargs["port"] == [5432, 5433]
    assert kwargs["user"] == "app"
    assert kwargs["password"] == "s3cret"
    assert kwargs["database"] == "orders"
    assert kwargs["timeout"] == 10.0
    assert kwargs["target_session_attrs"] == "read-write"
    assert opts.sslmode == "verify-full"
    assert kwargs["server_settings"] == {
        "application_name": "shop",
        "search_path": "tenant1",
        "statement_timeout": "5000",
    }


def test_dbname_and_single_host_port() -> None:
    kwargs = connect_options("host=/var/run/postgresql port=5432 dbname=d").connect_kwargs()
    assert kwargs == {"host": "/var/run/postgresql", "port": 5432, "database": "d"}


def test_hostaddr_is_used_when_no_host_is_given() -> None:
    assert connect_options("hostaddr=10.0.0.5").hosts == ("10.0.0.5",)
    assert connect_options("host=db.internal hostaddr=10.0.0.5").hosts == ("db.internal",)


def test_pgx_pool_options_from_dapr_docs_are_honoured() -> None:
    opts = connect_options(
        "host=db pool_min_conns=1 pool_max_conns=10 pool_max_conn_idle_time=5m "
        "pool_health_check_period=1m keepalives=1"
    )
    assert (opts.pool_min_conns, opts.pool_max_conns) == (1, 10)
    assert opts.pool_max_conn_idle_time == 300
    assert opts.ignored == ("pool_health_check_period", "keepalives")
    assert "server_settings" not in opts.connect_kwargs()


def test_unknown_options_become_server_run_time_parameters() -> None:
    kwargs = connect_options("host=db TimeZone=UTC").connect_kwargs()
    assert kwargs["server_settings"] == {"timezone": "UTC"}


@pytest.mark.parametrize(
    ("conninfo", "option"),
    [
        ("host=db port=http", "port"),
        ("host=db port=70000", "port"),
        ("host=db sslmode=sometimes", "sslmode"),
        ("host=db connect_timeout=soon", "connect_timeout"),
        ("host=db target_session_attrs=whatever", "target_session_attrs"),
        ("host=db channel_binding=require", "channel_binding"),
        ("host=db options=search_path=x", "options"),
    ],
)
def test_bad_options_are_refused_by_name(conninfo: str, option: str) -> None:
    with pytest.raises(MetadataError) as err:
        connect_options(conninfo)
    assert err.value.field == "connectionString"
    assert f"'{option}'" in str(err.value)


def test_describe_and_repr_never_show_the_password() -> None:
    opts = connect_options("host=db port=5433 user=app password=s3cret dbname=orders")
    assert opts.describe() == "app@db:5433/orders"
    assert "s3cret" not in repr(opts)


# -- URL connection strings -------------------------------------------------------------------


def test_url_with_encoded_credentials_and_query_options() -> None:
    opts = connect_options(
        "postgresql://app:p%40ss%3Aw%2Frd@db:5433/orders?sslmode=require&application_name=shop"
    )
    assert opts.user == "app"
    assert opts.password == "p@ss:w/rd"
    assert (opts.hosts, opts.ports, opts.database) == (("db",), (5433,), "orders")
    assert opts.sslmode == "require"
    assert opts.server_settings == {"application_name": "shop"}


def test_url_with_several_hosts_and_ipv6() -> None:
    opts = connect_options("postgres://u@[::1]:5433,db2,db3:6000/d")
    assert opts.hosts == ("::1", "db2", "db3")
    assert opts.ports == (5433, 5432, 6000)


def test_url_query_host_selects_a_unix_socket() -> None:
    opts = connect_options("postgresql:///orders?host=%2Fvar%2Frun%2Fpostgresql")
    assert opts.hosts == ("/var/run/postgresql",)
    assert opts.database == "orders"


def test_test_suite_dsn_parses() -> None:
    kwargs = connect_options("postgres://postgres@127.0.0.1:5432/test").connect_kwargs()
    assert kwargs == {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}


# -- TLS files ------------------------------------------------------------------------------------


def test_tls_files_need_an_ssl_context_unless_tls_is_disabled() -> None:
    assert connect_options("host=db sslmode=verify-full sslrootcert=/ca.pem").needs_ssl_context()
    assert not connect_options("host=db sslmode=disable sslrootcert=/ca.pem").needs_ssl_context()
    assert not connect_options("host=db sslmode=require").needs_ssl_context()


def test_unreadable_tls_file_is_a_metadata_error_without_the_password() -> None:
    opts = connect_options("host=db password=s3cret sslrootcert=/nonexistent/ca.pem")
    with pytest.raises(MetadataError) as err:
        ssl_context(opts)
    assert err.value.field == "connectionString"
    assert "s3cret" not in str(err.value)


# -- query SQL stays parameterised -----------------------------------------------------------------


def test_like_pattern_escapes_wildcards_in_the_prefix() -> None:
    assert escape_like("app||") == "app||%"
    assert escape_like("50%_off\\") == "50\\%\\_off\\\\%"


@pytest.mark.parametrize(
    "doc",
    [
        {"filter": {"EQ": {"name'; DROP TABLE x; --": "'; DROP TABLE x; --"}}},
        {"filter": {"OR": [{"GT": {"a": True}}, {"IN": {"b": []}}, {"EQ": {"c": None}}]}},
        {
            "filter": {"AND": [{"LT": {"a.b": [1]}}, {"NEQ": {"a.b": 2.5}}]},
            "sort": [{"key": "a.b"}],
        },
        {"sort": [{"key": "x", "order": "DESC"}], "page": {"limit": 2, "token": "4"}},
    ],
)
def test_query_values_travel_as_parameters(doc: dict[str, object]) -> None:
    sql, args = select_query("state", parse_query(doc), "app||")
    assert "DROP" not in sql and "app||" not in sql
    used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert used == set(range(1, len(args) + 1))  # every parameter bound, none unused
