"""REST candle backfill: paging, limits, rate limit, retries, gaps, idempotence (httpx.MockTransport)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.backfill import backfill_spot, candle_windows
from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.rest import (
    CandlesClient,
    RestRequestError,
    RestSource,
    TransientRestError,
    parse_candles,
)

PAYLOADS = Path(__file__).parent / "payloads"
T0 = 1_795_000_000 - 1_795_000_000 % 60  # a minute boundary


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


class FakeCandles:
    """A venue with 1-minute candles from T0, minutes divisible by 7 missing (nothing traded)."""

    def __init__(
        self, source: RestSource, minutes: int, faults: list[int] | None = None, *, end_exclusive: bool = False
    ) -> None:
        self.source = source
        self.end_exclusive = end_exclusive  # the docs do not say whether `end` is inclusive
        self.minutes = minutes
        self.faults = list(faults or [])  # status codes to answer before serving
        self.requests: list[httpx.Request] = []
        self.request_times: list[float] = []

    def candle(self, start: int) -> Any:
        price = 95_000 + (start - T0) / 60
        if self.source == "exchange":
            return [start, price - 5, price + 5, price - 1, price + 1, 1.5]
        return {"start": str(start), "low": str(price - 5), "high": str(price + 5), "open": str(price - 1),
                "close": str(price + 1), "volume": "1.5"}

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.faults:
            return httpx.Response(self.faults.pop(0), json={"message": "slow down"}, headers={"Retry-After": "2"})
        q = request.url.params
        start, end = int(q["start"]), int(q["end"])
        if self.source == "exchange":
            assert request.url.path == "/products/BTC-USD/candles"
            assert q["granularity"] == "60"
            limit = 300
        else:
            assert request.url.path == "/api/v3/brokerage/market/products/BTC-USD/candles"
            assert q["granularity"] == "ONE_MINUTE"
            limit = int(q["limit"])
            assert limit <= 350
        if (end - start) // 60 + 1 > limit:
            return httpx.Response(400, json={"message": "too many candles requested"})
        first = start - 60 if self.source == "exchange" else start  # the Exchange may answer before start
        stop = end if self.end_exclusive else end + 1
        starts = [s for s in range(first, stop, 60) if T0 <= s < T0 + 60 * self.minutes and (s - T0) // 60 % 7]
        rows = [self.candle(s) for s in reversed(starts)]  # newest first
        body: Any = rows if self.source == "exchange" else {"candles": rows}
        return httpx.Response(200, json=body)


def client_for(fake: FakeCandles, clock: FakeClock, **kwargs: Any) -> CandlesClient:
    return CandlesClient(
        fake.source,
        "https://venue.test",
        transport=httpx.MockTransport(fake.handler),
        sleep=clock.sleep,
        clock=clock,
        backoff=Backoff(base_s=0.1, cap_s=1.0),
        **kwargs,
    )


def expected_minutes(minutes: int) -> int:
    return sum(1 for m in range(minutes) if m % 7)


def test_candle_windows_cover_the_range_within_the_limit() -> None:
    windows = candle_windows(T0 + 17, T0 + 60 * 1000, 60, 350)
    assert windows[0][0] == T0
    assert windows[-1][1] == T0 + 60 * 1000
    assert all((last - first) // 60 + 1 <= 350 for first, last in windows)
    assert all(b[0] == a[1] + 60 for a, b in itertools.pairwise(windows))
    assert len(windows) == 3
    assert candle_windows(T0, T0, 60, 300) == [(T0, T0)]
    with pytest.raises(ValueError):
        candle_windows(T0, T0 - 60, 60, 300)


def test_documented_samples_parse() -> None:
    advanced = parse_candles("advanced", json.loads((PAYLOADS / "advanced_trade_rest_public_candles.json").read_text()), 1)
    (c,) = advanced.candles
    assert (c.start_ts, c.open, c.high, c.low, c.close, c.volume) == (1639508050_000, 140.21, 140.21, 140.21, 140.21, 56437345.0)
    exchange = parse_candles("exchange", json.loads((PAYLOADS / "exchange_rest_candles.json").read_text()), 1)
    (e,) = exchange.candles
    # [time, low, high, open, close, volume]: low comes before high.
    assert (e.start_ts, e.low, e.high, e.open, e.close, e.volume) == (1637048520_000, 60474.78, 60558.32, 60502.6, 60532.31, 6.88844238)


def test_bad_candles_become_rejects() -> None:
    rows = [[T0, 10, 5, 7, 7, 1], [T0 + 60, 0, 5, 1, 1, 1], ["x", 1, 2, 1, 1, 1], [T0 + 120, 1, 2, 1.5, 1.5, 1]]
    page = parse_candles("exchange", rows, 7)
    assert [c.start_ts for c in page.candles] == [(T0 + 120) * 1000]
    assert [r.reason for r in page.rejects] == ["inconsistent_ohlc", "non_positive_price", "non_numeric"]
    assert all(r.source == "coinbase_rest" and r.received_ts == 7 for r in page.rejects)


@pytest.mark.parametrize(("source", "end_exclusive"), [("advanced", False), ("advanced", True), ("exchange", False)])
def test_backfill_pages_over_gaps_idempotently(source: RestSource, end_exclusive: bool, sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    minutes = 1000
    fake = FakeCandles(source, minutes, faults=[429, 503], end_exclusive=end_exclusive)
    clock = FakeClock()
    progress: list[tuple[int, int]] = []
    with client_for(fake, clock) as client:
        result = backfill_spot(engine, client, "BTC-USD", T0, T0 + 60 * (minutes - 1), progress=lambda d, t: progress.append((d, t)))
        assert client.retries == 2
    assert clock.sleeps.count(2.0) == 2  # the Retry-After header was honoured
    pages = 3 if source == "advanced" else 4
    assert result.pages == pages and progress[-1] == (pages, pages)
    assert result.candles == expected_minutes(minutes)
    assert result.empty_buckets == minutes - expected_minutes(minutes)
    stored = read_frame(engine, "SELECT * FROM spot_candles ORDER BY start_ts")
    assert stored.height == expected_minutes(minutes)
    assert stored["start_ts"][0] == (T0 + 60) * 1000  # minute 0 had no trades; nothing before start kept
    assert stored["source"].unique().to_list() == [f"coinbase_{source}"]
    assert (stored["low"] <= stored["open"]).all() and (stored["high"] >= stored["close"]).all()

    # Run it again over an overlapping range: no duplicates.
    with client_for(FakeCandles(source, minutes), FakeClock()) as client:
        backfill_spot(engine, client, "BTC-USD", T0 + 60 * 500, T0 + 60 * (minutes + 100))
    assert read_frame(engine, "SELECT COUNT(*) AS n FROM spot_candles")["n"][0] == expected_minutes(minutes)
    engine.dispose()


def test_rate_limit_spaces_requests(sqlite_url: str) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    clock = FakeClock()
    fake = FakeCandles("exchange", 3000)
    original = fake.handler

    def timed(request: httpx.Request) -> httpx.Response:
        fake.request_times.append(clock.now)
        return original(request)

    client = CandlesClient("exchange", "https://venue.test", transport=httpx.MockTransport(timed), sleep=clock.sleep, clock=clock)
    backfill_spot(engine, client, "BTC-USD", T0, T0 + 60 * 2999)
    assert len(fake.request_times) == 10
    gaps = [b - a for a, b in zip(fake.request_times, fake.request_times[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9  # <= 10 requests per second
    engine.dispose()


def test_client_errors_are_not_retried_and_persistent_5xx_gives_up() -> None:
    clock = FakeClock()
    rejecting = FakeCandles("advanced", 10, faults=[404])
    with client_for(rejecting, clock) as client, pytest.raises(RestRequestError, match="HTTP 404"):
        client.fetch("BTC-USD", T0, T0 + 60, 60)
    assert len(rejecting.requests) == 1
    failing = FakeCandles("advanced", 10, faults=[500] * 10)
    with client_for(failing, clock, max_attempts=3) as client, pytest.raises(TransientRestError, match="HTTP 500"):
        client.fetch("BTC-USD", T0, T0 + 60, 60)
    assert len(failing.requests) == 3


def test_unsupported_granularity() -> None:
    with client_for(FakeCandles("exchange", 1), FakeClock()) as client, pytest.raises(ValueError, match="not offered"):
        client.fetch("BTC-USD", T0, T0 + 60, 120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-11-25T08:00Z", "--granularity", "120"], "not offered"),
        (["--start", "2026-11-25T08:00Z", "--end", "2026-11-25T07:00Z"], "before --start"),
        (["--start", "yesterday"], "not a time"),
        (["--start", "2026-11-25T08:00Z", "--source", "kraken"], "advanced or exchange"),
    ],
)
def test_backfill_command_rejects_bad_input(args: list[str], message: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from kbtc.cli import app

    env = {"DB_PATH": str(tmp_path / "k.sqlite"), "LOG_PATH": str(tmp_path / "app.jsonl")}
    result = CliRunner().invoke(app, ["backfill-spot", *args], env=env, terminal_width=200)
    assert result.exit_code == 2
    assert message in result.output


def test_parse_time() -> None:
    from kbtc.commands.spot import parse_time_s

    assert parse_time_s("1795000000") == 1_795_000_000
    assert parse_time_s("2026-11-25T08:00Z") == parse_time_s("2026-11-25T08:00:00+00:00") == parse_time_s("2026-11-25T09:00+01:00")
    assert parse_time_s("2026-11-25T08:00") == parse_time_s("2026-11-25T08:00Z")  # naive means UTC
    assert parse_time_s("now", now_s=1234.5) == 1234


def _tick(ts_ms: int, seq: int) -> Any:
    from kbtc.venues.coinbase.messages import SpotTick

    return SpotTick("BTC-USD", "coinbase_advanced", ts_ms, ts_ms * 1_000_000, ts_ms + 5, 95_000.0, 94_999.0, 95_001.0, 1.0, 1.0, seq)


def test_repair_windows_find_holes_and_unfilled_gaps(migrated_url: str) -> None:
    from kbtc.pipeline.backfill import repair_windows
    from kbtc.pipeline.recording import record_feed_events
    from kbtc.pipeline.spot_collector import write_ticks
    from kbtc.venues.records import FeedEventKind, FeedEventRecord

    base = T0 * 1000
    # Ticks every second for 10 minutes, except a 2-minute outage from minute 4.
    stamps = [base + i * 1000 for i in range(600) if not 240 <= i < 360]
    engine = make_engine(migrated_url)
    write_ticks(engine, [_tick(ts, i) for i, ts in enumerate(stamps)])
    gap = FeedEventRecord("coinbase", "c1", FeedEventKind.GAP, base + 500_000, "BTC-USD", 10, 12, 800, "2 lost")
    filled = FeedEventRecord("coinbase", "c1", FeedEventKind.GAP, base + 100_000, "BTC-USD", 3, 4, 0, "filled")
    record_feed_events(engine, [gap, filled])
    windows = repair_windows(engine, "BTC-USD", base - 60_000, base + 599_000)
    assert windows == [
        (base - 60_000, base),  # nothing before the first tick
        (base + 239_000, base + 360_000),  # the outage
        (base + 499_200, base + 500_000),  # the unfilled gap's loss window; the filled one is not repaired
    ]
    engine.dispose()
