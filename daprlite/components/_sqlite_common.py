"""Opening a shared SQLite file and writing to it safely: ``state.sqlite``, ``pubsub.sqlite``.

Both components keep their data in a file that several sidecar processes
open at once, and both run the blocking ``sqlite3`` driver on one worker
thread of their own; these helpers run on that thread. WAL lets readers in
other processes go on while one writes; ``BEGIN IMMEDIATE`` takes the write
lock before the first read, so a check-then-write stays atomic across
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from daprlite.components.state._sqlite_sql import Target

T = TypeVar("T")


def open_connection(
    target: Target, busy_timeout: float, *, wal: bool, log: logging.Logger, who: str
) -> tuple[sqlite3.Connection, str]:
    """Open ``target`` (creating its folder) in autocommit mode; returns it and the journal mode."""
    if target.file is not None:
        target.file.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: callers issue BEGIN/COMMIT themselves.
    conn = sqlite3.connect(
        target.database, uri=target.uri, timeout=busy_timeout, isolation_level=None
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if target.file is not None:
            wanted = "wal" if wal else "delete"
            journal = _set_journal_mode(conn, wanted, busy_timeout)
            if journal != wanted:  # e.g. another process holds the file in the other mode
                log.warning("%s: journal is %s, not %s", who, journal, wanted)
            if journal == "wal":
                conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; FULL costs an fsync
    except BaseException:
        conn.close()
        raise
    return conn, journal


def retry_while_locked(work: Callable[[], T], busy_timeout: float) -> T:
    """Run ``work``, retrying while SQLite says the file is locked or busy.

    Some steps (switching the journal mode, a read that must become a write
    in WAL mode) fail at once with "database is locked" instead of waiting
    for the busy timeout: two sidecars opening a new file together hit this.
    Runs on the component's worker thread, so sleeping here blocks no loop.
    """
    deadline = time.monotonic() + max(busy_timeout, 1.0)
    while True:
        try:
            return work()
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _set_journal_mode(conn: sqlite3.Connection, wanted: str, busy_timeout: float) -> str:
    return retry_while_locked(
        lambda: str(conn.execute(f"PRAGMA journal_mode = {wanted}").fetchone()[0]).lower(),
        busy_timeout,
    )


def in_transaction(
    conn: sqlite3.Connection,
    body: Callable[[sqlite3.Connection], T],
    before_commit: Callable[[], None] | None = None,
) -> T:
    """Run ``body`` in BEGIN IMMEDIATE (the write lock held from the first read), then COMMIT."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
        if before_commit is not None:
            before_commit()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return result


async def stop_worker(
    cleanup: asyncio.Task[None] | None,
    executor: ThreadPoolExecutor | None,
    close_connection: Callable[[], None],
) -> None:
    """Cancel the periodic cleanup, let queued jobs finish, close the file on its own thread."""
    if cleanup is not None:
        cleanup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleanup
    if executor is None:
        return
    try:
        await asyncio.get_running_loop().run_in_executor(executor, close_connection)
    finally:
        executor.shutdown(wait=False)
