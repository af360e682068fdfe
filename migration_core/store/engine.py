"""Database engines for the store (SQLite file or memory, PostgreSQL via psycopg 3) and error translation."""

from __future__ import annotations

import os
import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import StaticPool
from sqlmodel import create_engine

from migration_core.errors import StoreError
from migration_core.store.types import mask_secrets

# Execution option on the write engine: the transaction will write (SQLite: BEGIN IMMEDIATE).
WRITE_OPTION = "migrate_bot_write"
# Connection errors that retrying will not fix (wrong password, missing database, no permission).
_PERMANENT_MARKERS = ("password authentication", "no pg_hba.conf", "does not exist", "permission denied")


def normalise_url(url: str) -> str:
    """A bare postgresql:// would pick psycopg2, which is not installed; psycopg 3 is."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def make_engine(url: str, connect_timeout_s: int) -> tuple[Engine, threading.Lock | None]:
    """The engine for `url`, plus a lock when every operation must be serialised (in-memory SQLite).

    Raises ValueError (and sqlalchemy's ArgumentError / NoSuchModuleError) for URLs it cannot use.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ValueError(f"driver {parsed.get_driver_name()!r} is not installed")
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"connect_timeout": connect_timeout_s},
        )
        return engine, None
    if backend != "sqlite":
        raise ValueError(f"database {backend!r} is not supported")
    path = parsed.database or ""
    memory = path in ("", ":memory:")
    if not memory and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"the directory of {path} does not exist")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        **({"poolclass": StaticPool} if memory else {}),
    )
    event.listen(engine, "connect", _sqlite_on_connect(memory))
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine, threading.Lock() if memory else None


def _sqlite_on_connect(memory: bool) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # We issue BEGIN ourselves: pysqlite's implicit BEGIN is deferred and comes late, and a deferred
        # transaction that reads and then writes fails with "database is locked" instead of waiting its turn.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not memory:
            cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    return on_connect


def _sqlite_on_begin(conn: Any) -> None:
    # Writers take the write lock up front (IMMEDIATE): one writer at a time, across processes too, so a
    # read-check-write inside one transaction is safe (the SQLite side of SKIP LOCKED and compare-and-set).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def is_transient(err: BaseException, is_pg: bool) -> bool:
    """Worth retrying: the connection dropped or could not be made, or SQLite was busy."""
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, DisconnectionError | PoolTimeoutError):
        return True
    if not isinstance(err, OperationalError | InterfaceError):
        return False
    message = str(err.orig).lower()
    if not is_pg:
        return "locked" in message or "busy" in message
    sqlstate = getattr(err.orig, "sqlstate", None) or ""
    if sqlstate.startswith(("28", "3D", "42")):  # authorisation, unknown database, syntax / permission
        return False
    return not any(marker in message for marker in _PERMANENT_MARKERS)


def to_store_error(
    err: BaseException, *, masked_url: str, url: str, what: str, is_pg: bool, budget_s: float
) -> StoreError:
    """A StoreError an operator can act on, with every credential removed from the text."""
    orig = getattr(err, "orig", None) or err
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    reason = mask_secrets("; ".join(lines)[:400] or type(orig).__name__, url)
    if is_transient(err, is_pg):
        return StoreError(
            f"database at {masked_url} is unreachable: {reason}",
            f"check that the database server is running and reachable; retried for {budget_s:g} s",
        )
    if isinstance(err, OperationalError | InterfaceError):
        return StoreError(
            f"database at {masked_url} refused the connection or the operation ({what}): {reason}",
            "check the user, password and database name in the database URL, and the server's log",
        )
    return StoreError(f"database at {masked_url} failed to {what}: {reason}", "see the log; this may be a bug")
