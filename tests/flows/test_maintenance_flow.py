"""The maintenance flow migrates and publishes its artifact; prefect.yaml entrypoints import."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from prefect import Flow

from kbtc.db.engine import make_engine
from kbtc.db.migrate import current_revision, head_revision

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_entrypoints_are_flows_and_schedules_parse() -> None:
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
    assert spec["deployments"]
    for deployment in spec["deployments"]:
        module_path, func = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, func), Flow)
        for schedule in deployment.get("schedules", []):
            if "cron" in schedule:
                CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))
            else:
                IntervalSchedule(interval=schedule["interval"])
        assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "CANCEL_NEW"}


@pytest.mark.slow
def test_migrate_flow(prefect_server: None, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.maintenance import migrate_database

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    counts = migrate_database()
    assert counts["markets"] == 0
    engine = make_engine(sqlite_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
