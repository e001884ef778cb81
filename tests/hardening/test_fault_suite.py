"""Fault suite: every fault class the simulator can produce, injected into running collectors and REST steps.

Both collectors (Kalshi WebSocket, Coinbase WebSocket) run against one wall-clock simulator while the test
injects, round after round, each WebSocket fault into both feeds and each REST fault into the Kalshi quote
poll and the Coinbase candle backfill; 429s come as storms (`STORM_429` in a row), and the 5xx, 429, slow and
malformed faults also hit refresh-markets and refresh-settlements. A last round stalls only the Coinbase
ticker while heartbeats keep flowing. A fault is *recovered* when data stored after it was applied shows the
feed (or the step) working again without anyone restarting it. At the end:

- every injected fault was applied and recovered, and the collectors returned normally (no crash);
- each skipped sequence number is exactly one `gap` row in `feed_events` (expected → expected + 1); the
  ticker stall is a Coinbase `stale` period with its duration; disconnects and stalls end sessions in
  `feed_events`; every malformed frame is in `rejects`;
- a 429 storm costs exactly one client retry per 429 and fails no step (recovered within the retry budget);
  a malformed REST body fails that one poll or series with its reason, and the next run recovers;
- nothing is duplicated (natural keys) and nothing is lost (every trade and tick on the tape is in the table).

A summary table (target/kind: injected, applied, recovered) is printed. `KBTC_FAULT_SCALE` repeats the
rounds (CI: 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from simthread import fast_wall_config

from kbtc.config import load_settings
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.backfill import backfill_spot
from kbtc.pipeline.kalshi_catalog import refresh_markets
from kbtc.pipeline.kalshi_collector import collect_kalshi
from kbtc.pipeline.poll_quotes import poll_quotes
from kbtc.pipeline.settlements import refresh_settlements
from kbtc.pipeline.spot_collector import collect_spot
from kbtc.pipeline.tape import read_tape, tape_files
from kbtc.sim.faults import FaultKind, FaultTarget
from kbtc.sim.simulator import Simulator
from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.messages import SOURCE_ADVANCED
from kbtc.venues.coinbase.parsing import parse_advanced_frame
from kbtc.venues.coinbase.rest import CandlesClient
from kbtc.venues.kalshi.marketdata import parse_trade
from kbtc.venues.kalshi.parsing import FieldError
from kbtc.venues.kalshi.rest import KalshiRestClient, RetryPolicy
from kbtc.venues.kalshi.ws import StreamSettings

# Multi-process and timing-sensitive: run one at a time, in one worker (tests/conftest.py).
pytestmark = pytest.mark.serial

SCALE = max(1, int(os.environ.get("KBTC_FAULT_SCALE", "1")))
SERIES = ["KXBTC15M", "KXBTCD", "KXBTC"]
WS_FAULTS = [
    FaultKind.SKIP_SEQ, FaultKind.DUPLICATE, FaultKind.REORDER, FaultKind.MALFORMED_JSON, FaultKind.UNKNOWN_FIELDS,
    FaultKind.MISSING_FIELDS, FaultKind.DISCONNECT_CLEAN, FaultKind.DISCONNECT_ABRUPT, FaultKind.STALL,
]
REST_FAULTS = [FaultKind.HTTP_429, FaultKind.HTTP_5XX, FaultKind.SLOW_RESPONSE, FaultKind.MALFORMED_JSON,
               FaultKind.UNKNOWN_FIELDS, FaultKind.MISSING_FIELDS]
# The REST faults that also hit refresh-markets and refresh-settlements.
CATALOG_FAULTS = [FaultKind.HTTP_429, FaultKind.HTTP_5XX, FaultKind.SLOW_RESPONSE, FaultKind.MALFORMED_JSON]
STORM_429 = 4  # consecutive 429s, fewer than the clients' 8 attempts: recovered within the retry budget
SLOW_S = 0.3
STALL_S = 2.5  # longer than both watchdogs below: a stall must end in a detected dead socket and a reconnect
ROUND_TIMEOUT_S = 15.0

# Natural keys: a row appearing twice under one of these would be a duplicate.
NATURAL_KEYS = {
    "quotes": "market_ticker, quote_ts, source",
    "orderbook_snapshots": "market_ticker, book_ts, source",
    "kalshi_trades": "trade_id",
    "spot_ticks": "product_id, source, venue_time_ns",
    "spot_candles": "product_id, source, granularity_s, start_ts",
    "feed_events": "feed, connection_id, kind, event_ts, subject",
    "rejects": "source, received_ts, raw_sha256",
}


def _latest(engine: Any, table: str, column: str = "received_ts", where: str = "") -> int:
    value = read_frame(engine, f"SELECT MAX({column}) AS t FROM {table} {where}")["t"][0]
    return int(value) if value is not None else 0


async def _until(predicate: Any, timeout_s: float = ROUND_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _count(kind: FaultKind) -> int:
    """How many consecutive answers a REST fault spoils: a 429 comes as a storm."""
    return STORM_429 if kind is FaultKind.HTTP_429 else 1


def _duration(kind: FaultKind) -> float:
    return SLOW_S if kind is FaultKind.SLOW_RESPONSE else 0.0


class FaultRounds:
    """Injects faults, waits for each to be applied and recovered, and keeps the score."""

    def __init__(self, sim: Simulator, engine: Any) -> None:
        self.sim = sim
        self.engine = engine
        self.recovered: Counter[str] = Counter()
        self.gaps: list[tuple[str, list[tuple[int, int]]]] = []  # per skipped number: (feed, its gap rows)
        self.stale: list[list[int]] = []  # per ticker stall: durations (ms) of the stale rows it left
        self.storms: list[tuple[str, int]] = []  # per 429 storm: (step, client retries it cost)
        self.timeline: list[str] = []  # per WebSocket round: when it was applied and recovered (for a failure)

    def _events(self, feed: str, kind: str, since_ms: int) -> list[tuple[Any, ...]]:
        frame = read_frame(self.engine, "SELECT expected_seq, received_seq, duration_ms FROM feed_events "
                           "WHERE feed = :feed AND kind = :kind AND event_ts >= :since",
                           {"feed": feed, "kind": kind, "since": since_ms})
        return list(frame.iter_rows())

    async def ws_round(self, target: FaultTarget, kind: FaultKind, **params: Any) -> None:
        plan = self.sim.faults
        feed = "kalshi" if target is FaultTarget.KALSHI_WS else "coinbase"
        before = plan.applied[(target, kind)]
        injected_ms = _now_ms()
        plan.inject(target, kind, duration_s=STALL_S if kind is FaultKind.STALL else 0.0, **params)
        assert await _until(lambda: plan.applied[(target, kind)] > before), f"{target}/{kind} never applied"
        applied_ms = _now_ms()
        table = "orderbook_snapshots" if target is FaultTarget.KALSHI_WS else "spot_ticks"
        timeout = ROUND_TIMEOUT_S + (STALL_S if kind is FaultKind.STALL else 0.0)
        recovered = await _until(lambda: _latest(self.engine, table) > applied_ms + 200, timeout)
        if recovered:
            self.recovered[f"{target}/{kind}"] += 1
        channel = f"[{params['channel']}]" if "channel" in params else ""
        self.timeline.append(
            f"{target}/{kind}{channel}: applied {applied_ms - injected_ms} ms after injection, "
            + (f"recovered {_now_ms() - applied_ms} ms later" if recovered else
               f"NOT recovered in {timeout:g} s (latest {table} row received {_latest(self.engine, table) - applied_ms}"
               " ms after the fault was applied)")
        )
        if kind is FaultKind.SKIP_SEQ:
            # One number skipped on one stream: exactly one gap row, naming that number (events flush in batches).
            await _until(lambda: bool(self._events(feed, "gap", injected_ms)), 5.0)
            await asyncio.sleep(1.0)
            self.gaps.append((feed, [(e, r) for e, r, _ in self._events(feed, "gap", injected_ms)]))
        if params.get("channel") == "ticker":
            # The stale row opens at the last ticker before the stall and is rewritten with its duration.
            since_ms = injected_ms - 2_000
            await _until(lambda: any(d is not None for *_, d in self._events(feed, "stale", since_ms)), 5.0)
            self.stale.append([d for *_, d in self._events(feed, "stale", since_ms) if d is not None])

    async def kalshi_rest_round(self, client: KalshiRestClient, kind: FaultKind) -> None:
        """The fault hits the quote poll, then (for the catalog fault classes) refresh-markets and
        refresh-settlements, one after the other (the client is shared, so each step gets its own fault)."""
        steps = [("poll-quotes", self._poll)]
        if kind in CATALOG_FAULTS:
            steps += [("refresh-markets", self._catalog), ("refresh-settlements", self._settlements)]
        for step, run in steps:
            retries = client.retries
            self.sim.faults.inject(FaultTarget.KALSHI_REST, kind, count=_count(kind), duration_s=_duration(kind))
            if await run(client, kind):
                self.recovered[f"{FaultTarget.KALSHI_REST}/{kind}"] += _count(kind)
            if kind is FaultKind.HTTP_429:
                self.storms.append((step, client.retries - retries))

    async def _poll(self, client: KalshiRestClient, kind: FaultKind) -> bool:
        started_ms = _now_ms()
        summary = await poll_quotes(self.engine, client, SERIES, seconds=0.6, interval_s=0.2)
        # A body that is not JSON fails one poll (bad input is never retried); the next poll must succeed.
        # Transient faults (429 storm, 5xx, slow) are absorbed by the client's retries: no poll lost.
        lost_ok = kind is FaultKind.MALFORMED_JSON or summary.failures == 0
        return lost_ok and summary.quotes > 0 and _latest(
            self.engine, "quotes", where="WHERE source = 'rest'") >= started_ms

    async def _catalog(self, client: KalshiRestClient, kind: FaultKind) -> bool:
        first = await refresh_markets(self.engine, client, SERIES)
        if kind is FaultKind.MALFORMED_JSON:
            # That series fails this run with the reason, the others are stored; the next run recovers.
            failed = [s for s in first.series if s.error]
            return len(failed) == 1 and "not JSON" in (failed[0].error or "") and \
                (await refresh_markets(self.engine, client, SERIES)).ok
        return first.ok

    async def _settlements(self, client: KalshiRestClient, kind: FaultKind) -> bool:
        first = await refresh_settlements(self.engine, client, SERIES, since_seconds=3600)
        if kind is FaultKind.MALFORMED_JSON:
            again = await refresh_settlements(self.engine, client, SERIES, since_seconds=3600)
            return first.failed_series == 1 and again.failed_series == 0 and again.with_result > 0
        return first.failed_series == 0 and first.with_result > 0

    def coinbase_rest_round(self, client: CandlesClient, kind: FaultKind, window_s: tuple[int, int]) -> None:
        retries = client.retries
        self.sim.faults.inject(FaultTarget.COINBASE_REST, kind, count=_count(kind), duration_s=_duration(kind))
        result = backfill_spot(self.engine, client, "BTC-USD", *window_s, granularity_s=60)
        if result.candles > 0:
            self.recovered[f"{FaultTarget.COINBASE_REST}/{kind}"] += _count(kind)
        if kind is FaultKind.HTTP_429:
            self.storms.append(("backfill-spot", client.retries - retries))


@pytest.mark.slow
async def test_every_fault_class_is_recovered_without_loss_or_duplicates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'faults.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    ws_rounds = [kind for _ in range(SCALE) for kind in WS_FAULTS]
    rest_rounds = [kind for _ in range(SCALE) for kind in REST_FAULTS]
    async with Simulator(fast_wall_config(tick_interval_s=0.1)) as sim:
        assert sim.coinbase is not None
        settings = load_settings(database_url=url, data_dir=tmp_path / "data", kalshi_series=SERIES,
                                 KALSHI_REST_URL=sim.kalshi_rest_url, KALSHI_WS_URL=sim.kalshi_ws_url,
                                 coinbase_ws_url=sim.coinbase.ws_url)
        fast_retry = RetryPolicy(max_attempts=8, backoff=Backoff(base_s=0.05, cap_s=0.4))
        rounds = FaultRounds(sim, engine)
        async with KalshiRestClient(sim.kalshi_rest_url, retry=fast_retry) as client:
            assert (await refresh_markets(engine, client, SERIES)).ok
            stop = asyncio.Event()
            # Watchdogs shorter than the stall, reconnects fast: the suite measures recovery, not patience.
            budget_s = 20.0 + (len(ws_rounds) + SCALE) * (ROUND_TIMEOUT_S + STALL_S)
            kalshi = asyncio.create_task(collect_kalshi(
                settings, engine, budget_s, book_interval_s=0.2, catalog_refresh_s=3600,
                stream_settings=StreamSettings(silence_timeout_s=1.5, backoff=Backoff(base_s=0.05, cap_s=0.5)),
            ))
            spot = asyncio.create_task(collect_spot(
                settings, engine, stop, heartbeat_timeout_s=1.5, stale_s=1.5,
                backoff=Backoff(base_s=0.05, cap_s=0.5),
            ))
            assert await _until(lambda: _latest(engine, "orderbook_snapshots") > 0 and _latest(engine, "spot_ticks") > 0)
            now_s = int(time.time()) // 60 * 60
            with CandlesClient("advanced", sim.coinbase.rest_url, max_attempts=8, requests_per_s=50,
                               backoff=Backoff(base_s=0.05, cap_s=0.4)) as candles:
                for i, kind in enumerate(ws_rounds):
                    rest_kind = rest_rounds[i % len(rest_rounds)] if i < len(rest_rounds) else None
                    jobs = [rounds.ws_round(FaultTarget.KALSHI_WS, kind), rounds.ws_round(FaultTarget.COINBASE_WS, kind)]
                    if rest_kind is not None:
                        jobs.append(rounds.kalshi_rest_round(client, rest_kind))
                        window = (now_s - 3600 * (i + 2), now_s - 3600 * (i + 1) - 60)
                        jobs.append(asyncio.to_thread(rounds.coinbase_rest_round, candles, rest_kind, window))
                    await asyncio.gather(*jobs)
                for _ in range(SCALE):
                    # Only the ticker falls silent; heartbeats keep the socket alive: a stale period, no reconnect.
                    await rounds.ws_round(FaultTarget.COINBASE_WS, FaultKind.STALL, channel="ticker")
            kalshi.cancel()  # the budget is an upper bound; a cancelled session still flushes everything
            (kalshi_end,) = await asyncio.gather(kalshi, return_exceptions=True)
            assert isinstance(kalshi_end, asyncio.CancelledError), f"the Kalshi collector failed: {kalshi_end!r}"
            stop.set()
            spot_result = await spot
        summary = sim.faults.summary()
    try:
        tables = {t: read_frame(engine, f"SELECT {k}, COUNT(*) AS n FROM {t} GROUP BY {k} HAVING COUNT(*) > 1")
                  for t, k in NATURAL_KEYS.items()}
        events = read_frame(engine, "SELECT feed, kind, COUNT(*) AS n FROM feed_events GROUP BY feed, kind")
        rejects = read_frame(engine, "SELECT source, COUNT(*) AS n FROM rejects GROUP BY source")
        trade_ids = set(read_frame(engine, "SELECT trade_id FROM kalshi_trades")["trade_id"].to_list())
        tick_keys = set(read_frame(engine, "SELECT venue_time_ns FROM spot_ticks")["venue_time_ns"].to_list())
    finally:
        engine.dispose()

    report = "\n".join([
        f"fault suite (scale {SCALE}): target/kind          injected  applied  recovered",
        *(f"  {name:<34} {counts['injected']:>8} {counts['applied']:>8} {rounds.recovered[name]:>10}"
          for name, counts in summary.items()),
        f"  feed_events: {dict(zip(events['feed'] + '/' + events['kind'], events['n'], strict=True))}",
        f"  rejects: {dict(zip(rejects['source'], rejects['n'], strict=True))}",
        f"  gap rows per skipped number: {rounds.gaps}",
        f"  stale periods per ticker stall (ms): {rounds.stale}",
        f"  retries per {STORM_429}×429 storm: {rounds.storms}",
        "  WebSocket rounds:", *(f"    {line}" for line in rounds.timeline),
    ])
    with capsys.disabled():
        print("\n" + report)

    for name, counts in summary.items():
        assert counts["applied"] == counts["injected"], f"{name} not applied: {counts}\n{report}"
        assert rounds.recovered[name] == counts["injected"], \
            f"{name} not recovered: {rounds.recovered[name]}\n{report}"
    for table, dupes in tables.items():
        assert dupes.height == 0, f"duplicates in {table}: {dupes}"
    count = {(f, k): n for f, k, n in events.iter_rows()}
    # Every injected sequence gap is in feed_events exactly once, naming the one number that was skipped.
    assert sorted(feed for feed, _ in rounds.gaps) == sorted(["coinbase", "kalshi"] * SCALE), rounds.gaps
    for feed, rows in rounds.gaps:
        assert len(rows) == 1, f"{feed}: one skipped number left {len(rows)} gap rows: {rows}"
        ((expected_seq, received_seq),) = rows
        assert received_seq == expected_seq + 1, f"{feed}: gap {expected_seq} → {received_seq}"
    # A ticker stall while heartbeats flow is recorded as Coinbase `stale`, with the period's duration.
    assert len(rounds.stale) == SCALE
    for durations in rounds.stale:
        assert any(d >= 1_500 for d in durations), f"no stale period of the ticker stall: {durations}"
    # A 429 storm is absorbed within the client's retry budget: one retry per 429, no step failed.
    assert len(rounds.storms) == 4 * SCALE and all(retries == STORM_429 for _, retries in rounds.storms), rounds.storms
    # Each disconnect fault and each stall (watchdog) ends a session, and the session end is recorded.
    assert count.get(("kalshi", "disconnect"), 0) >= 3 * SCALE
    assert count.get(("kalshi", "stale"), 0) >= SCALE
    assert count.get(("coinbase", "disconnect"), 0) >= 3 * SCALE
    by_source = dict(zip(rejects["source"], rejects["n"], strict=True))
    assert by_source.get("kalshi.ws.unparsed", 0) >= SCALE
    assert by_source.get("coinbase_ws", 0) >= SCALE
    assert spot_result.feed.connects >= 1 + 3 * SCALE

    # Nothing lost: every parseable trade and tick on the tapes reached its table.
    tape_trades: set[str] = set()
    tape_ticks: set[int] = set()
    for record in read_tape(tape_files(tmp_path / "data" / "tape", "kalshi")):
        if '"type":"trade"' in record.raw.replace(" ", ""):
            with contextlib.suppress(FieldError, ValueError, KeyError, TypeError):
                tape_trades.add(parse_trade(json.loads(record.raw)["msg"], 0, "ws").trade_id)
    for record in read_tape(tape_files(tmp_path / "data" / "tape", "coinbase")):
        tape_ticks.update(t.venue_time_ns for t in parse_advanced_frame(record.raw, 0, "BTC-USD").ticks
                          if t.source == SOURCE_ADVANCED)
    assert tape_trades and tape_trades <= trade_ids
    assert tape_ticks and tape_ticks <= tick_keys
