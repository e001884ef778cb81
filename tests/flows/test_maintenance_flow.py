"""The maintenance flow migrates and publishes its artifact."""

from __future__ import annotations

import pytest

from kbtc.db.engine import make_engine
from kbtc.db.migrate import current_revision, head_revision


@pytest.mark.slow
def test_migrate_flow(prefect_server: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.maintenance import migrate_database

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    counts = migrate_database()
    assert counts["markets"] == 0
    engine = make_engine(sqlite_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
