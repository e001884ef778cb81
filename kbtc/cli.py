"""The `kbtc` command: every pipeline step runnable by hand, plus database and configuration tools.

Configuration errors print one line naming the variable and exit with status 2 — never a traceback.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from kbtc.commands import demo, edges, kalshi, maintenance, orchestration, replay, research, scoring, sim, spot
from kbtc.commands.common import console, engine_or_exit, fail, settings_or_exit, setup
from kbtc.log import get_logger

app = typer.Typer(
    name="kbtc",
    help="Kalshi BTC threshold contracts: ingest, price, fee-aware EV ledger, scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

_log = get_logger("kbtc.cli")


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from kbtc.config import mask_url_password
    from kbtc.db.migrate import DatabaseRevisionError, upgrade_database

    settings = setup()
    try:
        upgrade_database(settings.sqlalchemy_url, revision)
    except DatabaseRevisionError as exc:
        raise fail(str(exc)) from None
    _log.info("db_upgraded", revision=revision)
    console.print(f"database {mask_url_password(settings.sqlalchemy_url)} is at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "base") -> None:
    """Revert migrations down to REVISION (default: base, i.e. drop every table)."""
    from kbtc.db.migrate import DatabaseRevisionError, downgrade_database

    settings = setup()
    try:
        downgrade_database(settings.sqlalchemy_url, revision)
    except DatabaseRevisionError as exc:
        raise fail(str(exc)) from None
    console.print(f"database downgraded to {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision and the code's head revision."""
    from kbtc.db.engine import make_engine
    from kbtc.db.migrate import current_revision, head_revision

    settings = setup()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        console.print(f"database: {current_revision(engine) or '(none)'}  code head: {head_revision()}")
    finally:
        engine.dispose()


@db_app.command("check")
def db_check() -> None:
    """Fail unless the database is at head and the models match the migrations."""
    from alembic.util.exc import CommandError

    from kbtc.db.engine import make_engine
    from kbtc.db.migrate import DatabaseRevisionError, check_database_revision, check_models

    settings = setup()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        revision = check_database_revision(engine)
        check_models(settings.sqlalchemy_url)
    except (DatabaseRevisionError, CommandError) as exc:
        raise fail(str(exc).strip().splitlines()[0], code=1) from None
    finally:
        engine.dispose()
    console.print(f"ok: database at {revision}, models match migrations")


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration (secrets masked)."""
    settings = settings_or_exit()
    table = Table("variable", "value", title="kbtc configuration")
    for name, value in settings.public_view().items():
        table.add_row(name, value)
    console.print(table)


@app.command("status")
def status() -> None:
    """Print the database revision and the row count of every table."""
    from kbtc.pipeline.status import database_status

    settings = setup()
    engine = engine_or_exit(settings)
    try:
        console.print(database_status(engine, settings.sqlalchemy_url))
    finally:
        engine.dispose()


demo.register(app)
edges.register(app)
kalshi.register(app)
maintenance.register(app)
orchestration.register(app)
replay.register(app)
research.register(app)
scoring.register(app)
sim.register(app)
spot.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
