"""Shared fixtures: an isolated environment, temporary databases on SQLite and (when present) PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Keep tests away from a user's Prefect state and from telemetry, before anything imports Prefect.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"kbtc-prefect-{os.getpid()}"))

POSTGRES_ADMIN_URL = os.environ.get(
    "KBTC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_KBTC_ENV_PREFIXES = ("KALSHI_", "COINBASE_", "DB_PATH", "DATABASE_URL", "LOG_", "COLLECTOR_", "TRADING_")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every `serial` test in one xdist group: they run one after another, in one worker."""
    for item in items:
        if item.get_closest_marker("serial") is not None:
            item.add_marker(pytest.mark.xdist_group("serial"))


@pytest.fixture(autouse=True)
def cpu_share(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist, a `serial` test runs alone: it holds an exclusive lock that every other test takes
    shared. Multi-process suites with timing windows (kill moments, recovery deadlines) failed on 2 cores when
    another worker's tests took a core from them; the other tests still run beside each other.
    `serial(alone=False)`: one at a time with the other serial tests, but beside the rest — for long tests that
    mostly wait (Prefect servers and workers) with deadlines far from their needs, so the other core keeps
    working (on a slow 2-core host the exclusive minutes had pushed CI past 15)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of one run
    if run is None:
        yield
        return
    with (Path(tempfile.gettempdir()) / f"kbtc-pytest-{run}.lock").open("a") as handle:
        marker = request.node.get_closest_marker("serial")
        serial = marker is not None and marker.kwargs.get("alone", True)
        fcntl.flock(handle, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run each test in a temporary directory with no kbtc variables from the outer environment."""
    for name in list(os.environ):
        if name.startswith(_KBTC_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'kbtc.sqlite'}"


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("KBTC_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (KBTC_REQUIRE_POSTGRES=1) but unavailable: {reason}")
    pytest.skip(f"PostgreSQL unavailable: {reason}")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this session (skipped when no server, failed in CI)."""
    try:
        import psycopg
        from sqlalchemy.engine import make_url
    except ImportError as exc:  # pragma: no cover - psycopg is in the dev/postgres extras
        _postgres_unavailable(str(exc))
        raise
    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"kbtc_test_{uuid.uuid4().hex[:12]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _postgres_unavailable(str(exc).splitlines()[0])
    url = admin.set(database=name).render_as_string(hide_password=False)
    yield url
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """The session's PostgreSQL database, emptied (downgraded to base) after each test."""
    yield postgres_server_url
    from sqlalchemy import text

    from kbtc.db.engine import make_engine

    engine = make_engine(postgres_server_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def migrated_url(any_db_url: str) -> str:
    """A database (SQLite and PostgreSQL) migrated to head."""
    from kbtc.db.migrate import upgrade_database

    upgrade_database(any_db_url)
    return any_db_url
