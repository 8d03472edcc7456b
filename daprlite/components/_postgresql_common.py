"""Connecting to PostgreSQL, shared by ``state.postgresql`` and ``bindings.postgresql``.

Dapr gives both components the same connection metadata (``connectionString``,
``timeout``, ``maxConns``, ``connectionMaxIdleTime``, ``queryExecMode``).
:class:`PostgreSQLConnectionSettings` decodes and checks those names once; a
component's own settings dataclass subclasses it and adds its own fields.

The connection string is, as in Dapr, a libpq one: either ``key=value`` pairs
(``host=db user=app password='s p'``) or a ``postgres://`` URL. asyncpg takes
neither form as such for everything we need, so :func:`connect_options` parses
both into one :class:`ConnectOptions`, and :func:`open_pool` turns those and
the settings into an asyncpg pool.

The connection string carries the password: nothing here ever puts an option's
*value* into an error message, only option names from fixed tables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import urllib.parse
from dataclasses import dataclass, field, fields

import asyncpg

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import Duration, parse_duration, setting

_FIELD = "connectionString"
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TARGET_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
# libpq/pgx options that asyncpg cannot express and that only tune the connection:
# accepted so that Dapr connection strings keep working, and logged at init.
_IGNORED = frozenset(
    {
        "client_encoding",
        "description_cache_capacity",
        "default_query_exec_mode",
        "fallback_application_name",
        "keepalives",
        "keepalives_count",
        "keepalives_idle",
        "keepalives_interval",
        "load_balance_hosts",
        "min_read_buffer_size",
        "pool_health_check_period",
        "pool_max_conn_lifetime",
        "pool_max_conn_lifetime_jitter",
        "sslcompression",
        "sslsni",
        "statement_cache_capacity",
        "tcp_user_timeout",
    }
)
# Options that would weaken security if silently ignored: refuse them.
_REFUSED = frozenset({"channel_binding", "gssencmode", "require_auth", "requirepeer"})
_EXEC_MODES = ("cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol")
# What asyncpg raises when the server, the connection or the network fails.
DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _error(problem: str) -> MetadataError:
    return MetadataError(_FIELD, problem)


@dataclass(frozen=True, slots=True, repr=False)
class PostgreSQLConnectionSettings:
    """Dapr's PostgreSQL connection metadata (case-insensitive names), common to both components.

    Subclasses must be declared with ``repr=False`` to keep the redacting
    ``__repr__``, and one that adds a ``__post_init__`` must call
    ``PostgreSQLConnectionSettings.__post_init__(self)`` explicitly:
    zero-argument ``super()`` does not work in slotted dataclasses before Python 3.14.
    """

    connectionString: str = setting(
        required=True,
        doc="libpq connection string, key=value pairs or a postgres:// URL. Holds the password.",
    )
    timeout: Duration = setting(
        Duration(20),
        aliases=("timeoutInSeconds",),
        doc="Time limit of each operation, including waiting for a pooled connection.",
    )
    maxConns: int | None = setting(
        None, doc="Pool size; default: pool_max_conns of the connection string, else max(4, CPUs)."
    )
    connectionMaxIdleTime: Duration | None = setting(
        None, doc="Close pooled connections idle this long; default: the driver's 5 minutes."
    )
    queryExecMode: str = setting(
        "",
        doc="pgx's statement mode; 'exec' and 'simple_protocol' turn statement caching off "
        "(for PgBouncer in transaction mode).",
    )

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise MetadataError("timeout", f"must be positive, got {self.timeout:g}s")
        if self.maxConns is not None and self.maxConns < 1:
            raise MetadataError("maxConns", f"must be at least 1, got {self.maxConns}")
        if self.queryExecMode and self.queryExecMode not in _EXEC_MODES:
            raise MetadataError("queryExecMode", f"expected one of {', '.join(_EXEC_MODES)}")

    def __repr__(self) -> str:  # the connection string may hold a password
        shown = ", ".join(
            f"{f.name}=<redacted>" if f.name == "connectionString" else f"{f.name}={v!r}"
            for f in fields(self)
            for v in [getattr(self, f.name)]
        )
        return f"{type(self).__name__}({shown})"


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    """Everything a connection string may say, in asyncpg's terms."""

    hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    sslpassword: str | None = field(default=None, repr=False)
    sslcrl: str | None = None
    connect_timeout: float | None = None
    passfile: str | None = None
    target_session_attrs: str | None = None
    krbsrvname: str | None = None
    gsslib: str | None = None
    server_settings: dict[str, str] = field(default_factory=dict)
    pool_max_conns: int | None = None
    pool_min_conns: int | None = None
    pool_max_conn_idle_time: float | None = None
    ignored: tuple[str, ...] = ()  # option names accepted but not applied

    def describe(self) -> str:
        """``user@host:port/database`` for log lines; never the password."""
        hosts = ",".join(self.hosts) or "<default host>"
        ports = ",".join(str(p) for p in self.ports)
        where = f"{hosts}:{ports}" if ports else hosts
        who = f"{self.user}@" if self.user else ""
        return f"{who}{where}/{self.database or '<default database>'}"

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for ``asyncpg.connect``/``create_pool`` (without ``ssl``)."""
        kwargs: dict[str, object] = {}
        if self.hosts:
            kwargs["host"] = list(self.hosts) if len(self.hosts) > 1 else self.hosts[0]
        if self.ports:
            kwargs["port"] = list(self.ports) if len(self.ports) > 1 else self.ports[0]
        optional = {
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "timeout": self.connect_timeout,
            "passfile": self.passfile,
            "target_session_attrs": self.target_session_attrs,
            "krbsrvname": self.krbsrvname,
            "gsslib": self.gsslib,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        if self.server_settings:
            kwargs["server_settings"] = dict(self.server_settings)
        return kwargs

    def needs_ssl_context(self) -> bool:
        """Certificate files are given, which asyncpg only takes as an SSLContext."""
        files = (self.sslrootcert, self.sslcert, self.sslkey, self.sslcrl)
        return self.sslmode != "disable" and any(files)


def parse_conninfo(text: str) -> dict[str, str]:
    """Split a libpq connection string (``key=value`` pairs or a URL) into options."""
    stripped = text.strip()
    if stripped.startswith(("postgres://", "postgresql://")):
        return _parse_url(stripped)
    return _parse_key_values(stripped)


def _parse_key_values(text: str) -> dict[str, str]:
    # libpq grammar: key = value pairs separated by whitespace; a value is either
    # bare (ends at whitespace) or single-quoted; a backslash escapes the next
    # character in both. Errors name the option, never its value.
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return params
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i].lower()
        while i < n and text[i].isspace():
            i += 1
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", key) or i >= n or text[i] != "=":
            raise _error(
                f"option #{len(params) + 1} is not of the form key=value "
                "(quote values that contain spaces with single quotes)"
            )
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise _error(f"the quoted value of option {key!r} is not terminated")
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif ch == "'":
                    i += 1
                    break
                else:
                    value.append(ch)
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        params[key] = "".join(value)


def _parse_url(text: str) -> dict[str, str]:
    try:
        parts = urllib.parse.urlsplit(text)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise _error("the URL is malformed") from exc
    params: dict[str, str] = {}
    userinfo, _, hostspec = parts.netloc.rpartition("@")
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if user:
            params["user"] = urllib.parse.unquote(user)
        if has_password:
            params["password"] = urllib.parse.unquote(password)
    hosts, ports = [], []
    for spec in hostspec.split(",") if hostspec else []:
        if spec.startswith("["):  # [IPv6]:port
            addr, bracket, rest = spec[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise _error("a host in the URL has an unterminated IPv6 address")
            host, port = addr, rest[1:]
        else:
            host, _, port = spec.partition(":")
        hosts.append(urllib.parse.unquote(host))
        ports.append(port)
    if any(hosts):
        params["host"] = ",".join(hosts)
    if any(ports):
        params["port"] = ",".join(ports)
    if parts.path.strip("/"):
        params["dbname"] = urllib.parse.unquote(parts.path.lstrip("/"))
    for key, value in query:  # query options override the authority part, as in libpq
        params[key.lower()] = value
    return params


def _int(key: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _error(f"option {key!r} must be an integer from {low} to {high}, got {raw!r}")
    return value


def _server_options(raw: str) -> dict[str, str]:
    # libpq's "options" carries server command-line switches: -c name=value or --name=value.
    settings: dict[str, str] = {}
    tokens = [t.replace("\\ ", " ") for t in re.split(r"(?<!\\)\s+", raw.strip()) if t]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "-c" and i + 1 < len(tokens):
            i += 1
            token = tokens[i]
        elif token.startswith(("-c", "--")):
            token = token[2:]
        else:
            raise _error("option 'options' may only hold '-c name=value' or '--name=value'")
        name, eq, value = token.partition("=")
        if not eq or not name:
            raise _error("option 'options' may only hold '-c name=value' or '--name=value'")
        settings[name.replace("-", "_")] = value
        i += 1
    return settings


def connect_options(conninfo: str) -> ConnectOptions:
    """Parse a libpq connection string; raise MetadataError naming the bad option."""
    params = parse_conninfo(conninfo)
    values: dict[str, object] = {}
    server: dict[str, str] = {}
    ignored: list[str] = []
    host = params.pop("host", "") or params.pop("hostaddr", "")
    params.pop("hostaddr", None)  # with host also given: host wins (TLS checks need the name)
    if host:
        values["hosts"] = tuple(host.split(","))
    if params.get("port"):
        values["ports"] = tuple(
            _int("port", p, 1, 65535) if p else 5432 for p in params.pop("port").split(",")
        )
    params.pop("port", None)
    for key, raw in params.items():
        if key in ("user", "password", "passfile", "krbsrvname", "gsslib"):
            values[key] = raw
        elif key in ("dbname", "database"):
            values["database"] = raw
        elif key in ("sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl"):
            values[key] = raw or None
        elif key == "sslmode":
            if raw not in _SSL_MODES:
                raise _error(f"option 'sslmode' must be one of {', '.join(_SSL_MODES)}")
            values[key] = raw
        elif key == "target_session_attrs":
            if raw not in _TARGET_SESSION_ATTRS:
                allowed = ", ".join(_TARGET_SESSION_ATTRS)
                raise _error(f"option 'target_session_attrs' must be one of {allowed}")
            values[key] = raw
        elif key == "connect_timeout":
            seconds = _int(key, raw, -(2**31), 2**31)
            values[key] = float(seconds) if seconds > 0 else None  # libpq: <=0 waits forever
        elif key == "pool_max_conns":
            values[key] = _int(key, raw, 1, 10_000)
        elif key == "pool_min_conns":
            values[key] = _int(key, raw, 0, 10_000)
        elif key == "pool_max_conn_idle_time":
            try:
                values[key] = parse_duration(raw)
            except ValueError as exc:
                raise _error(f"option {key!r} must be a duration such as '5m'") from exc
        elif key == "application_name":
            server[key] = raw
        elif key == "options":
            server.update(_server_options(raw))
        elif key in _REFUSED:
            raise _error(f"option {key!r} is not supported by the asyncpg driver")
        elif key in _IGNORED or key.startswith("pool_"):
            ignored.append(key)
        else:
            server[key] = raw  # like pgx: any other option is a server run-time parameter
    return ConnectOptions(**values, server_settings=server, ignored=tuple(ignored))  # type: ignore[arg-type]


def ssl_context(options: ConnectOptions) -> ssl.SSLContext:
    """An SSLContext honouring sslmode and the certificate files (reads files: blocking).

    As in libpq, ``require`` (or no mode) with a root certificate verifies the
    chain like ``verify-ca``; only ``verify-full`` also checks the host name.
    """
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.sslrootcert)
        if options.sslcert:
            ctx.load_cert_chain(options.sslcert, options.sslkey, password=options.sslpassword)
        elif options.sslkey:
            raise _error("option 'sslkey' needs 'sslcert'")
        if options.sslcrl:
            ctx.load_verify_locations(options.sslcrl)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    except (OSError, ssl.SSLError) as exc:
        raise _error(f"cannot load the TLS files it names: {exc.strerror or exc}") from exc
    if options.sslmode != "verify-full":
        ctx.check_hostname = False
        if not options.sslrootcert and options.sslmode != "verify-ca":
            ctx.verify_mode = ssl.CERT_NONE
    return ctx


def parse_connection(
    settings: PostgreSQLConnectionSettings, *, what: str, log: logging.Logger
) -> ConnectOptions:
    """The options of ``settings.connectionString``; logs those asyncpg cannot apply.

    ``what`` names the component in log lines (``state store 'orders'``).
    """
    options = connect_options(settings.connectionString)
    for key in options.ignored:
        log.warning("%s: connection option %r is not supported by asyncpg; ignored", what, key)
    return options


async def open_pool(
    settings: PostgreSQLConnectionSettings, options: ConnectOptions, *, what: str
) -> asyncpg.Pool:
    """An asyncpg pool for ``options``, sized and tuned by ``settings``, within its timeout.

    Raises ComponentError naming ``what`` and the address (never the password).
    """
    kwargs = options.connect_kwargs()
    if options.needs_ssl_context():
        kwargs["ssl"] = await asyncio.to_thread(ssl_context, options)
    elif options.sslmode:
        kwargs["ssl"] = options.sslmode
    if settings.queryExecMode in ("exec", "simple_protocol"):
        kwargs["statement_cache_size"] = 0
    max_size = settings.maxConns or options.pool_max_conns or max(4, os.cpu_count() or 1)
    idle = settings.connectionMaxIdleTime or options.pool_max_conn_idle_time
    if idle is not None:
        kwargs["max_inactive_connection_lifetime"] = idle
    min_conns = options.pool_min_conns
    try:
        async with asyncio.timeout(settings.timeout):
            return await asyncpg.create_pool(
                min_size=min(1 if min_conns is None else min_conns, max_size),
                max_size=max_size,
                **kwargs,
            )
    except TimeoutError as exc:
        raise ComponentError(
            f"{what}: connecting to {options.describe()} timed out after {settings.timeout:g}s"
        ) from exc
    except DRIVER_ERRORS as exc:
        raise ComponentError(
            f"{what}: cannot connect to {options.describe()}: {type(exc).__name__}: {exc}"
        ) from exc


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close ``pool``, letting running calls finish, but not for more than 5 seconds."""
    try:
        async with asyncio.timeout(5):
            await pool.close()
    except TimeoutError:
        pool.terminate()
