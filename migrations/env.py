"""Alembic environment: the URL comes from kbtc settings (or the caller), batch mode for SQLite."""

from __future__ import annotations

import sys
from logging.config import fileConfig

from alembic import context

from kbtc.db.engine import make_engine
from kbtc.db.schema import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("url")
    if url:
        return str(url)
    from kbtc.config import SettingsError, load_settings

    try:
        return load_settings().sqlalchemy_url
    except SettingsError as exc:
        if config.cmd_opts is None:  # called from code (not the `alembic` command): the caller handles it
            raise
        # As the kbtc CLI: one line naming the variable, exit status 2, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
