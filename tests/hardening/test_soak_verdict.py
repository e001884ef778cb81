"""The soak fails CI: any failed run, any "database is locked", or RSS growth over the limit exits 1 and says why."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks.soak (the benchmarks are not an installed package: import them from the checkout)."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import soak

    return soak


def _result(soak: ModuleType, **fields: Any) -> Any:
    return soak.SoakResult(**({"rss_growth_pct": {"kalshi": 1.0, "coinbase": -2.0}} | fields))


def test_a_clean_soak_meets_every_target(soak: ModuleType) -> None:
    assert soak.missed_targets("sqlite", _result(soak)) == []


@pytest.mark.parametrize(("fields", "reason"), [
    ({"failures": ["poll-quotes exited 1"]}, "sqlite: 1 failed run(s)"),
    ({"locked": 2}, "sqlite: 'database is locked' 2 time(s)"),
    ({"rss_growth_pct": {"kalshi": 10.5, "coinbase": 0.0}}, "RSS of the kalshi collector grew 10.5 %"),
    ({"rss_growth_pct": {"kalshi": 0.0}}, "RSS growth of the coinbase collector not measured"),
])
def test_each_missed_target_is_a_reason(soak: ModuleType, fields: dict[str, Any], reason: str) -> None:
    (found,) = soak.missed_targets("sqlite", _result(soak, **fields))
    assert reason in found


def test_main_exits_1_and_prints_why(soak: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    class NoSimulator:
        def __init__(self, config: object) -> None:
            pass

        def __enter__(self) -> Any:
            return type("Sim", (), {"env": staticmethod(dict)})()

        def __exit__(self, *exc_info: object) -> None:
            pass

    monkeypatch.setattr(soak, "_SimThread", NoSimulator)
    monkeypatch.setattr(soak, "soak", lambda *args: _result(soak, failures=["settlements exited 1: boom"]))
    monkeypatch.setattr("sys.argv", ["soak", "--duration", "1", "--backend", "sqlite"])
    with pytest.raises(SystemExit) as exited:
        soak.main()
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "soak FAILED" in out and "sqlite: 1 failed run(s)" in out and "settlements exited 1: boom" in out

    monkeypatch.setattr(soak, "soak", lambda *args: _result(soak))
    soak.main()  # every target met: returns normally (exit status 0)
    assert "soak ok" in capsys.readouterr().out
