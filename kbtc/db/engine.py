"""Engine factory: SQLite tuned for concurrent writers, PostgreSQL through psycopg 3.

SQLite: WAL (readers never block the writer), `synchronous=NORMAL` (durable at checkpoints, safe with WAL),
`foreign_keys=ON`, a long `busy_timeout`, and — the part that removes "database is locked" under several
writer processes — write transactions open with `BEGIN IMMEDIATE`. A deferred transaction that reads first
and then tries to write can fail instantly with SQLITE_BUSY when another process committed in between
(the busy handler is not consulted for that upgrade); taking the write lock up front makes the busy
timeout apply. Reads keep plain deferred `BEGIN`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 60_000
_BEGIN_OPTION = "kbtc_sqlite_begin"


def normalise_url(url: str) -> str:
    """Map bare `postgresql://`/`postgres://` URLs to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Driver-level autocommit: we emit BEGIN ourselves (below) so we choose DEFERRED or IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for a SQLAlchemy URL (SQLite files get their directory created)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _install_sqlite_hooks(engine)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def is_sqlite(engine: Engine) -> bool:
    """True for a SQLite engine."""
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A short write transaction (`BEGIN IMMEDIATE` on SQLite); commits on success, rolls back on error."""
    with engine.connect() as conn:
        writer = conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}) if is_sqlite(engine) else conn
        with writer.begin():
            yield writer


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for reads (a deferred transaction, released on exit)."""
    with engine.connect() as conn:
        yield conn
