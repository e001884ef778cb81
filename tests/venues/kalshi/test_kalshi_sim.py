"""The Kalshi clients and steps against the exchange simulator over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine

from kbtc.config import load_settings
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import read_frame
from kbtc.pipeline.kalshi_catalog import refresh_markets, scan_markets
from kbtc.pipeline.kalshi_collector import collect_kalshi
from kbtc.pipeline.kalshi_store import write_index_prices
from kbtc.pipeline.poll_quotes import poll_quotes
from kbtc.pipeline.settlements import refresh_settlements
from kbtc.pipeline.tape import read_tape, tape_files
from kbtc.sim.kalshi.auth import ApiKey
from kbtc.sim.markets import CatalogConfig
from kbtc.sim.simulator import ManualClock, SimConfig, Simulator
from kbtc.venues.backoff import Backoff
from kbtc.venues.kalshi.auth import KalshiSigner
from kbtc.venues.kalshi.errors import KalshiAuthError
from kbtc.venues.kalshi.marketdata import IndexPriceRecord
from kbtc.venues.kalshi.orderbook import OrderBook
from kbtc.venues.kalshi.ratelimit import TokenBucket
from kbtc.venues.kalshi.rest import KalshiRestClient, RetryPolicy, rest_client_from_settings
from kbtc.venues.kalshi.ws import BookUpdate, KalshiStream, StreamSettings
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord

START_MS = 1_790_000_000_000  # 2026-09-21T12:53:20Z
SERIES = ("KXBTC15M", "KXBTCD", "KXBTC")
FAST_RETRY = RetryPolicy(max_attempts=6, backoff=Backoff(base_s=0.01, cap_s=0.05))
FAST_STREAM = StreamSettings(backoff=Backoff(base_s=0.01, cap_s=0.05), silence_timeout_s=10.0)


def _config(**overrides: object) -> SimConfig:
    catalog = CatalogConfig(window_minutes=2, event_minutes=10, history_s=3600, historical_cutoff_s=1200)
    base: dict[str, object] = {"seed": 5, "catalog": catalog, "rate_limit_per_s": None, "start_ms": START_MS,
                               "tick_interval_s": 0.02}
    return SimConfig(**(base | overrides))  # type: ignore[arg-type]


def _client(sim: Simulator, **kwargs: object) -> KalshiRestClient:
    options: dict[str, object] = {"bucket": TokenBucket(1e9, 1e9), "retry": FAST_RETRY} | kwargs
    return KalshiRestClient(sim.kalshi_rest_url, **options)  # type: ignore[arg-type]


@pytest.fixture
def engine(sqlite_url: str) -> Engine:
    upgrade_database(sqlite_url)
    return make_engine(sqlite_url)


@contextlib.asynccontextmanager
async def _ticking(clock: ManualClock, step_s: float = 1.0, every_s: float = 0.02) -> AsyncIterator[None]:
    """Move the simulator clock forward in the background (1 simulated second per 20 ms)."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(every_s)
            clock.advance(step_s)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_catalog_paging_filters_and_refresh(engine: Engine) -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim, _client(sim) as client:
        everything = await client.list_markets(limit=1000)
        paged = await client.list_markets(limit=7)
        assert len(everything) > 7 and [m["ticker"] for m in paged] == [m["ticker"] for m in everything]
        per_series = [await client.list_markets(series_ticker=s, limit=9) for s in SERIES]
        assert sorted(m["ticker"] for ms in per_series for m in ms) == sorted(m["ticker"] for m in everything)
        open_markets = await client.list_markets(status="open", limit=5)
        assert open_markets and {m["status"] for m in open_markets} == {"active"}
        summary = await refresh_markets(engine, client, SERIES, status="open", now_ms=clock())
        again = await refresh_markets(engine, client, SERIES, status="open", now_ms=clock())
    assert summary.ok and again.ok, summary
    stored = read_frame(engine, "SELECT market_ticker, fee_type, strike_type FROM markets")
    assert sorted(stored["market_ticker"].to_list()) == sorted(m["ticker"] for m in open_markets)
    assert set(stored["fee_type"].to_list()) <= {"quadratic", "quadratic_with_maker_fees", "flat"}
    assert read_frame(engine, "SELECT count(*) AS n FROM rejects")["n"][0] == 0


async def test_kalshi_market_limit_is_the_page_size_of_every_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock(START_MS + 30_000)
    monkeypatch.setenv("KALSHI_READS_PER_SECOND", "1000")
    async with Simulator(_config(), clock=clock) as sim:
        monkeypatch.setenv("KALSHI_REST_URL", sim.kalshi_rest_url)
        async with rest_client_from_settings(load_settings()) as client:
            everything = await client.list_markets(series_ticker="KXBTCD")
            events = await client.list_events(series_ticker="KXBTCD")
            assert client.requests_sent == 2  # default KALSHI_MARKET_LIMIT (1000): one page each
        monkeypatch.setenv("KALSHI_MARKET_LIMIT", "4")
        async with rest_client_from_settings(load_settings()) as client:
            paged = await client.list_markets(series_ticker="KXBTCD")
            assert client.requests_sent == math.ceil(len(everything) / 4) > 1
            assert await client.list_events(series_ticker="KXBTCD") == events
            assert client.requests_sent == math.ceil(len(everything) / 4) + math.ceil(len(events) / 4)
            # A call's own limit still wins (poll-quotes asks for exactly its batch).
            assert len(await client.list_markets(series_ticker="KXBTCD", limit=1000)) == len(everything)
    assert [m["ticker"] for m in paged] == [m["ticker"] for m in everything]


async def test_refresh_restricted_to_one_event_lists_and_demotes_only_that_event(engine: Engine) -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim, _client(sim) as client:
        events = await client.list_events(series_ticker="KXBTCD", status="open", with_nested_markets=True)
        event = events[0]
        wanted = sorted(m["ticker"] for m in event["markets"])
        only = await refresh_markets(engine, client, SERIES, status=None, event_ticker=event["event_ticker"],
                                     now_ms=clock())
        assert [(s.series_ticker, s.events, s.markets) for s in only.series] == [("KXBTCD", 1, len(wanted))]
        assert sorted(read_frame(engine, "SELECT market_ticker FROM markets")["market_ticker"]) == wanted
        everything = await refresh_markets(engine, client, SERIES, status=None, now_ms=clock())
        again = await refresh_markets(engine, client, SERIES, status=None, event_ticker=event["event_ticker"],
                                      now_ms=clock())
        with pytest.raises(ValueError, match="belongs to series 'KXBTCD'"):
            await refresh_markets(engine, client, ["KXBTC15M"], event_ticker=event["event_ticker"])
        scans = await scan_markets(client, SERIES, event_ticker=event["event_ticker"])
    assert everything.ok and again.ok and again.series[0].demoted == 0
    assert [(s.series_ticker, s.markets) for s in scans] == [("KXBTCD", len(wanted))]
    stored = read_frame(engine, "SELECT catalog_status, count(*) AS n FROM markets GROUP BY catalog_status")
    assert stored.to_dicts() == [{"catalog_status": "listed", "n": sum(s.markets for s in everything.series)}]


@pytest.mark.slow
async def test_rate_limit_and_429_storm_complete_within_the_budget() -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(rate_limit_per_s=20.0), clock=clock) as sim:
        # 60 concurrent reads against the Basic budget (20/s, 2 s burst): the client-side bucket paces them
        # (a 429 at a refill boundary, on a loaded machine, is retried within the budget; nothing is lost).
        async with _client(sim, bucket=TokenBucket.for_reads(19.0)) as client:
            series = await asyncio.gather(*(client.get_series("KXBTCD") for _ in range(60)))
            assert all(s["ticker"] == "KXBTCD" for s in series)
            assert client.bucket.waited_s > 1.0 and client.retries < 60 - 38
        sim.faults.inject("kalshi_rest", "http_429", count=4)
        async with _client(sim) as client:
            series = await client.get_series("KXBTC15M")
            assert series["ticker"] == "KXBTC15M" and client.retries == 4


async def test_5xx_and_malformed_pages(engine: Engine) -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim, _client(sim) as client:
        sim.faults.inject("kalshi_rest", "http_5xx", count=2)
        assert (await client.get_series("KXBTCD"))["ticker"] == "KXBTCD" and client.retries == 2
        sim.faults.inject("kalshi_rest", "malformed_json")
        broken = await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=clock())
        assert not broken.ok and "not JSON" in (broken.series[0].error or "")
        rejects = read_frame(engine, "SELECT source, raw FROM rejects")
        assert rejects["source"].to_list() == ["kalshi.rest.catalog"] and rejects["raw"][0]
        healed = await refresh_markets(engine, client, ["KXBTCD"], status="open", now_ms=clock())
    assert healed.ok and healed.series[0].markets > 0


async def test_signature_rejection_surfaces_a_clear_error(rsa_key: rsa.RSAPrivateKey, rsa_pem: bytes) -> None:
    clock = ManualClock(START_MS + 30_000)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = _config(api_keys=(ApiKey("key-1", rsa_key.public_key()),))
    async with Simulator(config, clock=clock) as sim:
        good = KalshiSigner("key-1", rsa_key, clock_ms=clock)
        async with _client(sim, signer=good) as client:
            assert (await client.get_series("KXBTC"))["ticker"] == "KXBTC"
        bad = KalshiSigner("key-1", other, clock_ms=clock)
        async with _client(sim, signer=bad) as client:
            with pytest.raises(KalshiAuthError, match="HTTP 401"):
                await client.get_series("KXBTC")
            assert client.retries == 0
        stream = KalshiStream(sim.kalshi_ws_url, ["X"], signer=bad, settings=FAST_STREAM)
        with pytest.raises(KalshiAuthError, match="handshake rejected with HTTP 401"):
            async with contextlib.aclosing(stream.items()) as items:
                async for _ in items:
                    pass
        stream = KalshiStream(sim.kalshi_ws_url, [], signer=good, settings=FAST_STREAM)
        async with contextlib.aclosing(stream.items()) as items:
            first = await anext(items)
        assert isinstance(first, FeedEventRecord) and first.kind == FeedEventKind.CONNECT


async def _open_tickers(sim: Simulator, series: str = "KXBTC15M") -> list[str]:
    async with _client(sim) as client:
        return [m["ticker"] for m in await client.list_markets(series_ticker=series, status="open")]


@pytest.mark.slow
async def test_abrupt_drop_reconnects_without_duplicate_quotes(sqlite_url: str, tmp_path: Path) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        tickers = await _open_tickers(sim, "KXBTCD")
        settings = load_settings(KALSHI_WS_URL=sim.kalshi_ws_url, data_dir=tmp_path)
        sim.faults.inject("kalshi_ws", "disconnect_abrupt")
        async with _ticking(clock):
            summary = await collect_kalshi(settings, engine, 2.5, markets=tickers, stream_settings=FAST_STREAM,
                                           tape_root=tmp_path / "tape")
    assert summary.connects >= 2 and summary.quotes > 0
    kinds = read_frame(engine, "SELECT kind FROM feed_events")["kind"].to_list()
    assert "disconnect" in kinds and "resubscribe" in kinds
    frames = [json.loads(r.raw) for r in read_tape(tape_files(tmp_path / "tape", "kalshi"))]
    ticker_keys = {(f["msg"]["market_ticker"], f["msg"]["ts_ms"]) for f in frames if f.get("type") == "ticker"}
    quotes = read_frame(engine, "SELECT market_ticker, quote_ts FROM quotes WHERE source = 'ws'")
    assert quotes.height == len(ticker_keys)  # every distinct ticker update once, re-deliveries not again
    assert set(zip(quotes["market_ticker"].to_list(), quotes["quote_ts"].to_list(), strict=True)) == ticker_keys


async def _until(items: AsyncIterator[object], done: Callable[[list[object]], bool], limit_s: float) -> list[object]:
    got: list[object] = []
    async with asyncio.timeout(limit_s):
        async for item in items:
            got.append(item)
            if done(got):
                break
    return got


@pytest.mark.slow
async def test_seq_gap_restores_a_book_identical_to_the_simulators() -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        tickers = await _open_tickers(sim, "KXBTCD")
        stream = KalshiStream(sim.kalshi_ws_url, tickers, settings=FAST_STREAM)
        async with contextlib.aclosing(stream.items()) as items:
            await _until(items, lambda g: sum(isinstance(i, BookUpdate) and i.is_snapshot for i in g) == len(tickers),
                         10.0)
            sim.faults.inject("kalshi_ws", "skip_seq")
            async with _ticking(clock):
                got = await _until(items, lambda g: any(isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.GAP
                                                        for i in g), 10.0)
                got += await _until(items, lambda g: sum(isinstance(i, BookUpdate) and i.is_snapshot for i in g)
                                    >= len(tickers), 10.0)
            # The clock is still now: drain what the publisher already sent, then compare with the venue's book.
            with contextlib.suppress(TimeoutError):
                await _until(items, lambda g: False, 0.5)
            async with _client(sim) as client:
                books = await client.get_orderbooks(tickers)
    gap = next(i for i in got if isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.GAP)
    assert gap.received_seq is not None and gap.expected_seq is not None and gap.received_seq > gap.expected_seq
    assert len(books) == len(tickers)
    for payload in books:
        venue = OrderBook(payload["ticker"])
        venue.apply_snapshot(payload)
        ours = stream.books[payload["ticker"]]
        assert (ours.yes_bids, ours.no_bids) == (venue.yes_bids, venue.no_bids), payload["ticker"]


async def test_legacy_and_degraded_shapes_store_exact_prices(engine: Engine) -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(legacy_cents=True), clock=clock) as sim, _client(sim) as client:
        sim.faults.inject("kalshi_rest", "missing_fields", count=3)
        sim.faults.inject("kalshi_rest", "unknown_fields", count=3)
        summary = await refresh_markets(engine, client, SERIES, status="open", now_ms=clock())
        assert summary.ok and sum(s.rejects for s in summary.series) == 0
        venue = {m["ticker"]: m for m in await client.list_markets(status="open")}
        await poll_quotes(engine, client, SERIES, seconds=0, status="active", now_ms=clock())
    quotes = read_frame(engine, "SELECT * FROM quotes").to_dicts()
    assert len(quotes) == len(venue)
    for quote in quotes:
        market = venue[quote["market_ticker"]]
        for side in ("yes_bid", "yes_ask", "no_bid", "no_ask"):
            # Exact: the stored cents are the venue's $0.0001 units / 100, sub-penny ticks included.
            assert round(quote[f"{side}_cents"] * 100) == round(float(market[f"{side}_dollars"]) * 10_000)
    sub_penny = [q for q in quotes if any(q[c] is not None and round(q[c] * 100) % 100
                                          for c in ("yes_bid_cents", "yes_ask_cents"))]
    assert sub_penny, "the simulator's tapered_deci_cent markets should quote sub-penny edges"


async def test_settlements_merge_live_and_historical(engine: Engine) -> None:
    clock = ManualClock(START_MS + 3_600_000)  # an hour in: settled markets on both sides of the cutoff
    async with Simulator(_config(), clock=clock) as sim, _client(sim) as client:
        summary = await refresh_settlements(engine, client, ["KXBTC15M"], since_seconds=3600, now_ms=clock())
        live = await client.list_markets(series_ticker="KXBTC15M", status="settled")
        historical = await client.list_historical_markets(series_ticker="KXBTC15M")
        again = await refresh_settlements(engine, client, ["KXBTC15M"], since_seconds=3600, now_ms=clock())
    assert live and historical and summary.failed_series == 0 and again.conflicts == 0
    rows = read_frame(engine, "SELECT * FROM markets WHERE result IS NOT NULL").to_dicts()
    assert {r["market_ticker"] for r in rows} >= {m["ticker"] for m in live}
    assert len(rows) > len(live)  # older windows came from /historical/markets
    for row in rows:
        assert row["expiration_value"] is not None and row["settled_ts"] is not None
        # KXBTC15M is greater_or_equal: YES when the settlement average is at least the strike.
        assert row["result"] == ("yes" if row["expiration_value"] >= row["floor_strike"] else "no")
        assert row["settlement_value_dollars"] == (1.0 if row["result"] == "yes" else 0.0)


@contextlib.contextmanager
def _sim_in_thread(config: SimConfig) -> Iterator[Simulator]:
    """A wall-clock simulator served from its own event loop in a thread (the commands run `asyncio.run`)."""
    loop = asyncio.new_event_loop()
    sim = Simulator(config)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(timeout=10)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


@pytest.mark.slow
def test_commands_against_the_simulator(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kbtc.cli import app

    upgrade_database(sqlite_url)
    with _sim_in_thread(_config(start_ms=None)) as sim:
        for name, value in {**sim.env(), "DATABASE_URL": sqlite_url, "DATA_DIR": str(tmp_path),
                            "LOG_PATH": str(tmp_path / "log.jsonl")}.items():
            monkeypatch.setenv(name, value)
        runner = CliRunner()
        scan = runner.invoke(app, ["scan-markets"])
        assert scan.exit_code == 0, scan.output
        assert all(series in scan.output for series in SERIES)
        refresh = runner.invoke(app, ["refresh-markets", "--status", "open"])
        assert refresh.exit_code == 0, refresh.output
        poll = runner.invoke(app, ["poll-quotes", "--seconds", "0", "--status", "active", "--concurrency", "2"])
        assert poll.exit_code == 0 and "polls=1" in poll.output, poll.output
        collect = runner.invoke(app, ["collect-kalshi", "--seconds", "1.5"])
        assert collect.exit_code == 0 and "connects=1" in collect.output, collect.output
        shared = runner.invoke(app, ["collect", "--kalshi", "--seconds", "1.5"])
        assert shared.exit_code == 0 and "kalshi: CollectSummary" in shared.output, shared.output
        settle = runner.invoke(app, ["refresh-settlements", "--since-seconds", "3600", "--limit", "4", "--debug"])
        assert settle.exit_code == 0, settle.output
        assert "fetched=3 " in settle.output, settle.output  # 4 // 3 series = 1 each
    engine = make_engine(sqlite_url)
    counts = {t: read_frame(engine, f"SELECT count(*) AS n FROM {t}")["n"][0]
              for t in ("markets", "quotes", "orderbook_snapshots", "feed_events")}
    assert all(n > 0 for n in counts.values()), counts


@pytest.mark.slow
def test_series_and_event_settings_narrow_the_catalog_commands(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from typer.testing import CliRunner

    from kbtc.cli import app

    upgrade_database(sqlite_url)
    with _sim_in_thread(_config(start_ms=None)) as sim:
        for name, value in {**sim.env(), "DATABASE_URL": sqlite_url, "DATA_DIR": str(tmp_path),
                            "LOG_PATH": str(tmp_path / "log.jsonl")}.items():
            monkeypatch.setenv(name, value)
        body = httpx.get(f"{sim.kalshi_rest_url}/events",
                         params={"series_ticker": "KXBTCD", "status": "open", "with_nested_markets": "true"}).json()
        event = body["events"][0]
        runner = CliRunner()

        monkeypatch.setenv("KALSHI_SERIES_TICKER", "KXBTC15M")
        scan = runner.invoke(app, ["scan-markets"])
        assert scan.exit_code == 0, scan.output
        assert "KXBTC15M" in scan.output and "KXBTCD" not in scan.output
        mismatch = runner.invoke(app, ["refresh-markets"], env={"KALSHI_EVENT_TICKER": event["event_ticker"]})
        assert mismatch.exit_code == 2 and "Traceback" not in mismatch.output
        assert mismatch.output.strip().startswith("error: KALSHI_EVENT_TICKER: event ")
        assert "belongs to series 'KXBTCD'" in mismatch.output

        bogus = runner.invoke(app, ["refresh-markets", "--status", "bogus"])
        assert bogus.exit_code == 2 and "--status must be one of" in bogus.output, bogus.output
        monkeypatch.delenv("KALSHI_SERIES_TICKER")
        monkeypatch.setenv("KALSHI_EVENT_TICKER", event["event_ticker"])
        refresh = runner.invoke(app, ["refresh-markets", "--status", "all"])
        assert refresh.exit_code == 0, refresh.output
        assert "KXBTC15M" not in refresh.output
        scan = runner.invoke(app, ["scan-markets"])
        assert scan.exit_code == 0 and "KXBTCD" in scan.output and "KXBTC15M" not in scan.output, scan.output
    engine = make_engine(sqlite_url)
    stored = read_frame(engine, "SELECT DISTINCT event_ticker FROM markets")["event_ticker"].to_list()
    engine.dispose()
    assert stored == [event["event_ticker"]]


@pytest.mark.slow
async def test_books_survive_a_fault_drill() -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        tickers = await _open_tickers(sim, "KXBTCD")
        stream = KalshiStream(sim.kalshi_ws_url, tickers, settings=FAST_STREAM)
        async with contextlib.aclosing(stream.items()) as items:
            await _until(items, lambda g: sum(isinstance(i, BookUpdate) and i.is_snapshot for i in g) == len(tickers),
                         10.0)
            for kind in ("duplicate", "reorder", "malformed_json", "unknown_fields", "missing_fields",
                         "disconnect_clean"):
                sim.faults.inject("kalshi_ws", kind)
            async with _ticking(clock):
                got = await _until(items, lambda g: sum(isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.CONNECT
                                                        for i in g) >= 1, 10.0)
                got += await _until(items, lambda g: sum(isinstance(i, BookUpdate) and i.is_snapshot for i in g)
                                    >= len(tickers), 10.0)
                await asyncio.sleep(0.3)
            with contextlib.suppress(TimeoutError):
                got += await _until(items, lambda g: False, 0.5)
            async with _client(sim) as client:
                books = await client.get_orderbooks(tickers)
        applied = sim.faults.summary()
    assert all(counts["applied"] == counts["injected"] for counts in applied.values()), applied
    assert stream.connects == 2 and not [b for b in stream.books.values() if b.stale]
    for payload in books:
        venue = OrderBook(payload["ticker"])
        venue.apply_snapshot(payload)
        ours = stream.books[payload["ticker"]]
        assert (ours.yes_bids, ours.no_bids) == (venue.yes_bids, venue.no_bids), payload["ticker"]


@pytest.mark.slow
async def test_collector_follows_the_catalog_as_windows_open(sqlite_url: str, tmp_path: Path) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        async with _client(sim) as client:
            await refresh_markets(engine, client, ["KXBTC15M"], status=None, now_ms=clock())
        first = read_frame(engine, "SELECT min(open_ts) AS t FROM markets WHERE status = 'active'")["t"][0]
        settings = load_settings(KALSHI_WS_URL=sim.kalshi_ws_url, KALSHI_SERIES="KXBTC15M", data_dir=tmp_path)
        async with _ticking(clock):  # ~150 simulated seconds: the next 2-minute window opens
            await collect_kalshi(settings, engine, 3.0, stream_settings=FAST_STREAM, tape_root=tmp_path / "tape",
                                 catalog_refresh_s=0.2, clock_ms=clock)
    opened_later = read_frame(engine, "SELECT market_ticker FROM markets WHERE open_ts > :t", {"t": first})
    streamed = set(read_frame(engine, "SELECT DISTINCT market_ticker FROM orderbook_snapshots")["market_ticker"])
    assert set(opened_later["market_ticker"].to_list()) & streamed  # subscribed once it opened


async def test_cfbenchmarks_index_prints(engine: Engine) -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        settings = StreamSettings(backoff=Backoff(0.01, 0.05), lifecycle=False, index_ids=("BRTI",))
        stream = KalshiStream(sim.kalshi_ws_url, [], settings=settings)
        async with contextlib.aclosing(stream.items()) as items, _ticking(clock):
            # Past a window close (every 2 simulated minutes here): prints inside and outside its last minute.
            got = await _until(items, lambda g: sum(isinstance(i, IndexPriceRecord) for i in g) >= 90, 10.0)
    prints = [i for i in got if isinstance(i, IndexPriceRecord)]
    assert all(p.index_id == "BRTI" and p.value_usd > 0 and p.avg_60s_usd is not None for p in prints)
    assert [p.value_ts for p in prints] == sorted(p.value_ts for p in prints)
    assert not [i for i in got if isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.GAP]
    window_ms = 120_000
    for p in prints:
        in_last_minute = -p.value_ts % window_ms < 60_000
        assert (p.avg_15min_usd is not None) == in_last_minute, p
        if in_last_minute:
            assert p.avg_15min_count == 60 - -p.value_ts % window_ms // 1000
    write_index_prices(engine, prints)
    stored = read_frame(engine, "SELECT value_ts, avg_15min_usd, avg_15min_count FROM index_prices ORDER BY value_ts")
    assert stored.rows() == [(p.value_ts, p.avg_15min_usd, p.avg_15min_count) for p in prints]


@pytest.mark.slow
async def test_collector_started_on_an_empty_catalog_picks_markets_up_without_any_frame(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Nothing streams while no market is tracked (lifecycle off here): the catalog is followed on a timer."""
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    clock = ManualClock(START_MS + 30_000)
    quiet = StreamSettings(backoff=Backoff(base_s=0.01, cap_s=0.05), silence_timeout_s=10.0, lifecycle=False)
    async with Simulator(_config(), clock=clock) as sim:
        settings = load_settings(KALSHI_WS_URL=sim.kalshi_ws_url, KALSHI_SERIES="KXBTC15M", data_dir=tmp_path)

        async def refresh_later() -> None:
            await asyncio.sleep(0.5)
            async with _client(sim) as client:
                await refresh_markets(engine, client, ["KXBTC15M"], status=None, now_ms=clock())

        async with _ticking(clock):
            refresher = asyncio.ensure_future(refresh_later())
            summary = await collect_kalshi(settings, engine, 3.0, stream_settings=quiet, tape_root=tmp_path / "tape",
                                           catalog_refresh_s=0.2, clock_ms=clock)
            await refresher
    assert summary.markets >= 1 and summary.quotes > 0


@pytest.mark.slow
async def test_unusable_delta_is_resnapshotted_to_the_simulators_book() -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        tickers = await _open_tickers(sim, "KXBTCD")
        stream = KalshiStream(sim.kalshi_ws_url, tickers, settings=FAST_STREAM)
        async with contextlib.aclosing(stream.items()) as items:
            await _until(items, lambda g: sum(isinstance(i, BookUpdate) and i.is_snapshot for i in g) == len(tickers),
                         10.0)
            # The next data messages lose `delta_fp` (ticker frames too, where it changes nothing).
            sim.faults.inject("kalshi_ws", "missing_fields", count=3, fields=["delta_fp"])
            async with _ticking(clock):
                got = await _until(items, lambda g: any(isinstance(i, RejectRecord) for i in g), 10.0)
                broken = {json.loads(r.raw)["msg"]["market_ticker"] for r in got if isinstance(r, RejectRecord)}
                got += await _until(items, lambda g: {i.book.market_ticker for i in g if isinstance(i, BookUpdate)
                                                      and i.is_snapshot} >= broken, 10.0)
            with contextlib.suppress(TimeoutError):
                got += await _until(items, lambda g: False, 0.5)
            async with _client(sim) as client:
                books = await client.get_orderbooks(tickers)
    rejects = [i for i in got if isinstance(i, RejectRecord)]
    assert rejects and {r.reason for r in rejects} == {"delta_fp: missing"}
    gaps = [i for i in got if isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.GAP]
    assert gaps and all((g.detail or "").startswith("unusable orderbook_delta for ") for g in gaps)
    for payload in books:
        venue = OrderBook(payload["ticker"])
        venue.apply_snapshot(payload)
        ours = stream.books[payload["ticker"]]
        assert (ours.yes_bids, ours.no_bids) == (venue.yes_bids, venue.no_bids), payload["ticker"]


async def test_refused_subscribe_is_retried_at_the_next_sync() -> None:
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        # Created 10 s from now: until then the venue answers a subscribe with error 16 (market not found),
        # as Kalshi may right after a market's `created` event.
        upcoming = min((m for m in sim.catalog.markets(clock() + 600_000) if m.created_ms > clock()),
                       key=lambda m: m.created_ms)
        settings = StreamSettings(backoff=Backoff(0.01, 0.05), silence_timeout_s=10.0, lifecycle=False)
        stream = KalshiStream(sim.kalshi_ws_url, [upcoming.ticker], settings=settings)
        async with contextlib.aclosing(stream.items()) as items:
            got = await _until(items, lambda g: sum(isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.ERROR
                                                    for i in g) == 3, 10.0)
            clock.advance((upcoming.created_ms - clock()) / 1000 + 1)
            await stream.resync()
            got += await _until(items, lambda g: any(isinstance(i, BookUpdate) for i in g), 10.0)
    errors = [i for i in got if isinstance(i, FeedEventRecord) and i.kind == FeedEventKind.ERROR]
    assert {e.subject for e in errors} == {"orderbook_delta", "ticker", "trade"}
    assert all((e.detail or "").startswith("code 16: Market not found (subscribe refused") for e in errors)
    book = next(i for i in got if isinstance(i, BookUpdate))
    assert book.is_snapshot and book.book.market_ticker == upcoming.ticker
    assert stream.connects == 1  # recovered without a reconnect


@pytest.mark.slow
async def test_collector_retries_a_refused_subscribe_on_its_timer(sqlite_url: str, tmp_path: Path) -> None:
    upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    clock = ManualClock(START_MS + 30_000)
    async with Simulator(_config(), clock=clock) as sim:
        upcoming = min((m for m in sim.catalog.markets(clock() + 600_000) if m.created_ms > clock()),
                       key=lambda m: m.created_ms)
        settings = load_settings(KALSHI_WS_URL=sim.kalshi_ws_url, data_dir=tmp_path)
        async with _ticking(clock):  # the market is created ~10 simulated seconds (0.2 s) in
            await collect_kalshi(settings, engine, 2.0, markets=[upcoming.ticker], stream_settings=FAST_STREAM,
                                 tape_root=tmp_path / "tape", catalog_refresh_s=0.3)
    errors = read_frame(engine, "SELECT subject, detail FROM feed_events WHERE kind = 'error'")
    assert set(errors["subject"].to_list()) >= {"orderbook_delta", "ticker", "trade"}
    books = read_frame(engine, "SELECT DISTINCT market_ticker FROM orderbook_snapshots")["market_ticker"].to_list()
    assert books == [upcoming.ticker]
