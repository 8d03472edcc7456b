"""The queue file behind ``pubsub.sqlite``: schema, claims, acks and cleanup.

``pubsub.sqlite`` (``sqlite.py``) calls these methods on its own worker
thread, the only thread that touches the connection; nothing here knows
about asyncio. Every sidecar on the machine opens the same file, so every
state change that reads before it writes runs in ``BEGIN IMMEDIATE``, which
takes the file's write lock first: two processes can never claim one message
for one group at once.

Tables (all prefixed ``pubsub_`` so the file may also hold ``state.sqlite``):

- ``messages``: one row per published message; ``seq`` is AUTOINCREMENT so a
  deleted number is never handed out again (group cursors rely on that);
- ``groups``: one row per (topic, consumer group) with ``cursor``, the
  highest ``seq`` the group has already taken into ``inflight``;
- ``inflight``: messages a group has taken but not acknowledged, with the
  time the current claim ends (``claimed_until``), the delivery count and
  the claiming subscription (``owner``). An expired claim — a crashed
  consumer, or a release after a handler error — is claimable again.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from daprlite.components._sqlite_common import in_transaction, open_connection, retry_while_locked
from daprlite.components.errors import ComponentError
from daprlite.components.state._sqlite_sql import Target

T = TypeVar("T")
_log = logging.getLogger("daprlite.component.pubsub")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS pubsub_messages (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        data BLOB NOT NULL,
        content_type TEXT NOT NULL,
        metadata TEXT NOT NULL,
        published_at REAL NOT NULL,
        expires_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS pubsub_messages_topic ON pubsub_messages (topic, seq)",
    "CREATE INDEX IF NOT EXISTS pubsub_messages_expiry ON pubsub_messages (expires_at) "
    "WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS pubsub_groups (
        topic TEXT NOT NULL,
        grp TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        PRIMARY KEY (topic, grp)
    )""",
    """CREATE TABLE IF NOT EXISTS pubsub_inflight (
        topic TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        claimed_until REAL NOT NULL,
        attempts INTEGER NOT NULL,
        owner TEXT NOT NULL,
        PRIMARY KEY (topic, grp, seq)
    )""",
    "CREATE INDEX IF NOT EXISTS pubsub_inflight_seq ON pubsub_inflight (seq)",
    "CREATE TABLE IF NOT EXISTS pubsub_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
)

_HAS_WORK = """SELECT
    EXISTS (SELECT 1 FROM pubsub_messages WHERE topic = ?1 AND seq >
            (SELECT cursor FROM pubsub_groups WHERE topic = ?1 AND grp = ?2))
    OR EXISTS (SELECT 1 FROM pubsub_inflight
               WHERE topic = ?1 AND grp = ?2 AND claimed_until <= ?3)"""
_DUE = """SELECT f.seq, f.attempts, m.data, m.content_type, m.metadata, m.expires_at
    FROM pubsub_inflight f JOIN pubsub_messages m ON m.seq = f.seq
    WHERE f.topic = ? AND f.grp = ? AND f.claimed_until <= ? ORDER BY f.seq LIMIT ?"""
_NEW = """SELECT seq, data, content_type, metadata, expires_at FROM pubsub_messages
    WHERE topic = ? AND seq > ? ORDER BY seq LIMIT ?"""
_RECLAIM = """UPDATE pubsub_inflight SET claimed_until = ?, attempts = attempts + 1, owner = ?
    WHERE topic = ? AND grp = ? AND seq = ?"""
_FORGET = "DELETE FROM pubsub_inflight WHERE topic = ? AND grp = ? AND seq = ?"
_CLAIM = """INSERT OR IGNORE INTO pubsub_inflight
    (topic, grp, seq, claimed_until, attempts, owner) VALUES (?, ?, ?, ?, 1, ?)"""
_RELEASE = """UPDATE pubsub_inflight SET claimed_until = ?
    WHERE topic = ? AND grp = ? AND seq = ? AND owner = ?"""
_CLEANUP = (
    # Expired (ttlInSeconds) messages are never delivered, claimed or not.
    "DELETE FROM pubsub_messages WHERE expires_at IS NOT NULL AND expires_at <= ?",
    "DELETE FROM pubsub_inflight WHERE seq NOT IN (SELECT seq FROM pubsub_messages)",
    # Older than the retention and taken and acknowledged by every group of the topic.
    """DELETE FROM pubsub_messages WHERE published_at < ?
        AND NOT EXISTS (SELECT 1 FROM pubsub_groups g
                        WHERE g.topic = pubsub_messages.topic AND g.cursor < pubsub_messages.seq)
        AND NOT EXISTS (SELECT 1 FROM pubsub_inflight f WHERE f.seq = pubsub_messages.seq)""",
)
_CLEANUP_KEY = "last-cleanup"


@dataclass(frozen=True, slots=True)
class Row:
    """A message as one group's claim hands it out."""

    seq: int
    data: bytes
    content_type: str
    metadata: Mapping[str, str]
    attempt: int


@dataclass(frozen=True, slots=True)
class Publication:
    topic: str
    data: bytes
    content_type: str
    metadata: Mapping[str, str]
    expires_at: float | None


def _row(seq: int, attempt: int, data: bytes, content_type: str, metadata: str) -> Row:
    decoded = json.loads(metadata) if metadata else {}
    return Row(seq, bytes(data), content_type, decoded, attempt)


class QueueFile:
    """The connection to the queue file; every method runs on the one worker thread."""

    def __init__(self, target: Target, busy_timeout: float, wal: bool, label: str) -> None:
        self._target = target
        self._label = label  # the component name, for log lines
        self._busy_timeout = busy_timeout
        self._wal = wal
        self._conn: sqlite3.Connection | None = None

    def open(self) -> str:
        """Open (creating folders and tables as needed); returns the journal mode in use."""
        self._conn, journal = open_connection(
            self._target,
            self._busy_timeout,
            wal=self._wal,
            log=_log,
            who=f"pubsub.sqlite {self._label}",
        )
        retry_while_locked(
            lambda: self._transaction(lambda c: [c.execute(s) for s in _SCHEMA]),
            self._busy_timeout,
        )
        return journal

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ComponentError(f"pubsub.sqlite: {self._target.label} is not open")
        return self._conn

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` holding the write lock from its first read (BEGIN IMMEDIATE)."""
        return in_transaction(self._connection(), body)

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, publications: Sequence[Publication], now: float) -> None:
        """Append messages, all or none."""
        rows = [
            (p.topic, p.data, p.content_type, json.dumps(dict(p.metadata)), now, p.expires_at)
            for p in publications
        ]
        self._transaction(
            lambda c: c.executemany(
                "INSERT INTO pubsub_messages "
                "(topic, data, content_type, metadata, published_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    # -- consuming ----------------------------------------------------------------------------
    def join(self, topic: str, group: str) -> None:
        """Create the group if new; it starts at the oldest message still retained."""
        self._transaction(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO pubsub_groups (topic, grp, cursor) VALUES (?, ?, 0)",
                (topic, group),
            )
        )

    def has_work(self, topic: str, group: str, now: float) -> bool:
        """A lock-free look: is anything claimable? (Polls cost no write lock.)"""
        row = self._connection().execute(_HAS_WORK, (topic, group, now)).fetchone()
        return bool(row[0])

    def claim(
        self, topic: str, group: str, owner: str, limit: int, until: float, now: float
    ) -> tuple[list[Row], bool]:
        """Claim up to ``limit`` messages until ``until``: due redeliveries first, then new.

        Returns the rows and whether more may be waiting (the batch was full).
        """

        def body(c: sqlite3.Connection) -> tuple[list[Row], bool]:
            rows: list[Row] = []
            due = c.execute(_DUE, (topic, group, now, limit)).fetchall()
            for seq, attempts, data, ctype, meta, expires in due:
                if expires is not None and expires <= now:
                    c.execute(_FORGET, (topic, group, seq))
                    continue
                c.execute(_RECLAIM, (until, owner, topic, group, seq))
                rows.append(_row(seq, attempts + 1, data, ctype, meta))
            room = limit - len(due)
            fresh: list[tuple[int, bytes, str, str, float | None]] = []
            if room > 0:
                cursor = c.execute(
                    "SELECT cursor FROM pubsub_groups WHERE topic = ? AND grp = ?",
                    (topic, group),
                ).fetchone()
                if cursor is None:  # the group vanished (file replaced): join again
                    c.execute(
                        "INSERT INTO pubsub_groups (topic, grp, cursor) VALUES (?, ?, 0)",
                        (topic, group),
                    )
                    cursor = (0,)
                fresh = c.execute(_NEW, (topic, cursor[0], room)).fetchall()
                for seq, data, ctype, meta, expires in fresh:
                    if expires is not None and expires <= now:
                        continue  # expired before this group took it: skip it for good
                    c.execute(_CLAIM, (topic, group, seq, until, owner))
                    rows.append(_row(seq, 1, data, ctype, meta))
                if fresh:
                    c.execute(
                        "UPDATE pubsub_groups SET cursor = ? WHERE topic = ? AND grp = ?",
                        (fresh[-1][0], topic, group),
                    )
            return rows, len(due) + len(fresh) >= limit

        return self._transaction(body)

    def ack(self, topic: str, group: str, seq: int) -> None:
        """The group is done with ``seq`` (whoever holds the claim now)."""
        self._connection().execute(_FORGET, (topic, group, seq))

    def release(self, topic: str, group: str, seq: int, owner: str, at: float) -> None:
        """Make ``seq`` claimable again from ``at``, unless another consumer took it over."""
        self._connection().execute(_RELEASE, (at, topic, group, seq, owner))

    def release_many(
        self, topic: str, group: str, seqs: Sequence[int], owner: str, at: float
    ) -> None:
        conn = self._connection()
        conn.executemany(_RELEASE, [(at, topic, group, seq, owner) for seq in seqs])

    # -- housekeeping -------------------------------------------------------------------------
    def cleanup(self, retention: float, interval: float, now: float) -> int:
        """Delete expired and fully consumed old messages, unless any sidecar did so lately."""

        def body(c: sqlite3.Connection) -> int:
            last = c.execute(
                "SELECT value FROM pubsub_meta WHERE key = ?", (_CLEANUP_KEY,)
            ).fetchone()
            # 0.9: a sleep of ``interval`` may end a hair before the clock says it has passed.
            if last is not None and now - float(last[0]) < 0.9 * interval:
                return 0
            expired, orphans, consumed = _CLEANUP
            removed = c.execute(expired, (now,)).rowcount
            c.execute(orphans)
            removed += c.execute(consumed, (now - retention,)).rowcount
            c.execute(
                "INSERT INTO pubsub_meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_CLEANUP_KEY, repr(now)),
            )
            return removed

        return self._transaction(body)
