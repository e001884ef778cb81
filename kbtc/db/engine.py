"""Engine factory: SQLite tuned for concurrent writers, PostgreSQL through psycopg 3.

SQLite: WAL (readers never block the writer), `synchronous=NORMAL` (durable at checkpoints, safe with WAL),
`foreign_keys=ON`, a long `busy_timeout`, and — the part that removes "database is locked" under several
writer processes — write transactions open with `BEGIN IMMEDIATE`. A deferred transaction that reads first
and then tries to write can fail instantly with SQLITE_BUSY when another process committed in between
(the busy handler is not consulted for that upgrade); taking the write lock up front makes the busy
timeout apply. Reads keep plain deferred `BEGIN`.

Bulk load (`make_engine(..., bulk_load=True)`, SQLite only): `synchronous=OFF` and a 256 MiB page cache on each
of the engine's connections, for a database that only costs a re-run if an OS crash or power loss corrupts it —
`kbtc replay` into a file it creates. Pragmas belong to connections, not to the file: once the engine is disposed,
every other connection gets the defaults above.
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
BULK_LOAD_CACHE_KIB = 262_144
_BEGIN_OPTION = "kbtc_sqlite_begin"


def normalise_url(url: str) -> str:
    """Map bare `postgresql://`/`postgres://` URLs to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _install_sqlite_hooks(engine: Engine, *, bulk_load: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Driver-level autocommit: we emit BEGIN ourselves (below) so we choose DEFERRED or IMMEDIATE.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF" if bulk_load else "PRAGMA synchronous=NORMAL")
        if bulk_load:
            cursor.execute(f"PRAGMA cache_size=-{BULK_LOAD_CACHE_KIB}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, echo: bool = False, bulk_load: bool = False) -> Engine:
    """Create an engine for a SQLAlchemy URL (SQLite files get their directory created).

    `bulk_load`: the bulk-load pragmas on SQLite (module docstring); ignored elsewhere.
    """
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
        _install_sqlite_hooks(engine, bulk_load=bulk_load)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True)


def sqlite_file_is_new(url: str) -> bool:
    """True for a SQLite URL whose file does not exist yet or is empty (False for memory and other backends)."""
    parsed = make_url(normalise_url(url))
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return False
    path = Path(database).expanduser()
    return not path.exists() or path.stat().st_size == 0


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
