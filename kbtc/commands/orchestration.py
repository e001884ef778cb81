"""Orchestration commands: `kbtc serve` runs every prefect.yaml deployment on its schedule from one process;
`kbtc deploy` registers them with a Prefect server for a work pool (`prefect deploy --all`).

The one place the core reaches up into `flows/` (lazily, inside the command): the CLI is the user's entry
point to everything, and `flows/` holds the Prefect side; `kbtc` itself still never imports Prefect at
import time.
"""

from __future__ import annotations

from typing import Annotated

import typer

from kbtc.commands.common import console, fail, setup


def _check_names(only: list[str] | None) -> list[str]:
    """The prefect.yaml deployment names; fail on any name in `only` that is not one of them."""
    from flows.deployments import load_deployment_specs

    names = [spec.name for spec in load_deployment_specs()]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise fail(f"unknown deployment(s): {', '.join(unknown)}; known: {', '.join(names)}")
    return names


def serve_command(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Serve only these deployments (repeatable).")
    ] = None,
) -> None:
    """Serve every deployment in prefect.yaml with its schedule (no work pool needed); Ctrl-C stops."""
    from kbtc.db.migrate import DatabaseRevisionError, upgrade_database

    settings = setup()
    try:
        upgrade_database(settings.sqlalchemy_url)
    except DatabaseRevisionError as exc:
        raise fail(str(exc)) from None
    from flows.deployments import serve_all

    names = _check_names(only)
    console.print(f"serving {len(only or names)} deployment(s): {', '.join(only or names)}")
    serve_all(only=only)


def deploy_command(
    only: Annotated[
        list[str] | None, typer.Option("--name", help="Register only these deployments (repeatable).")
    ] = None,
) -> None:
    """`prefect deploy --all` for prefect.yaml against PREFECT_API_URL (with Prefect 3.8.8's paging fix)."""
    setup()
    from flows.deployments import deploy_all

    _check_names(only)
    status = deploy_all(only=only)
    if status:
        raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    """Add the orchestration commands to the `kbtc` app."""
    app.command("serve")(serve_command)
    app.command("deploy")(deploy_command)
