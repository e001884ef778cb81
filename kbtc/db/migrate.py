"""Alembic helpers: upgrade, downgrade, current revision, model/migration drift, and the version guard.

The migrations live at the repository root (`migrations/`, `alembic.ini`) so that plain `alembic upgrade head`
works there; kbtc is installed in editable mode, which keeps them next to the package.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


class DatabaseRevisionError(RuntimeError):
    """The database schema does not match this version of kbtc."""


class DatabaseTooNewError(DatabaseRevisionError):
    """The database was migrated by a newer kbtc than this one."""


class DatabaseNotMigratedError(DatabaseRevisionError):
    """The database is behind the code's migrations (or empty)."""


def alembic_config(url: str) -> Config:
    """An Alembic Config for `url` (passed through attributes, so `%` in passwords needs no escaping)."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    # Called from kbtc: our logging is already configured; don't let alembic.ini's fileConfig replace it.
    config.attributes["configure_logger"] = False
    return config


def head_revision() -> str:
    """The newest revision id among the migrations shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise DatabaseRevisionError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_engine(url: str, *, bulk_load: bool = False) -> Engine:
    """Create an engine for `url`, refusing a database migrated by a newer kbtc (`DatabaseTooNewError`).

    Every command and flow opens its database here: code that does not know the newer schema must not read
    it as if it were its own, let alone write to it. `bulk_load`: see kbtc.db.engine.
    """
    from kbtc.db.engine import make_engine

    engine = make_engine(url, bulk_load=bulk_load)
    try:
        _refuse_too_new(current_revision(engine))
    except BaseException:
        engine.dispose()
        raise
    return engine


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (refuses a database newer than the code)."""
    open_engine(url).dispose()
    command.upgrade(alembic_config(url), revision)


def downgrade_database(url: str, revision: str = "base") -> None:
    """Revert migrations down to `revision` (refuses a database newer than the code)."""
    open_engine(url).dispose()
    command.downgrade(alembic_config(url), revision)


def check_models(url: str) -> None:
    """Raise if the models and the migrations disagree (Alembic's `check`); the database must be at head."""
    command.check(alembic_config(url))


def _refuse_too_new(revision: str | None) -> None:
    if revision is None:
        return
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    known = {rev.revision for rev in script.walk_revisions()}
    if revision not in known:
        raise DatabaseTooNewError(
            f"database schema revision {revision!r} is newer than this kbtc (head {head_revision()!r}); "
            "upgrade kbtc, or point DATABASE_URL/DB_PATH at another database"
        )


def check_database_revision(engine: Engine) -> str:
    """Return the database revision if it equals the code's head; raise a clear error otherwise."""
    revision = current_revision(engine)
    _refuse_too_new(revision)
    head = head_revision()
    if revision != head:
        raise DatabaseNotMigratedError(
            f"database schema is at {revision or 'no revision'}, the code expects {head}: "
            "run `kbtc db upgrade`"
        )
    return revision
