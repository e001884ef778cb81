"""Edge ticks with database I/O (parts (b) and (c) of benchmarks/edges.py).

Ours: `kbtc.pipeline.edges.compute_edge_tick` — read the inputs as of the tick (load_edge_inputs), estimate σ
and the basis, run the engine, upsert edges + edge_snapshots (+ the vol estimate) — on a migrated SQLite file,
with the live loop's cache (kbtc.pipeline.edges.LiveTickCache): the market catalog does not change between
the benchmark's ticks, as it does not between most live ticks (it changes every 15 minutes, ticks come every
10 s; each tick still runs the fingerprint query that would detect a change), and the latest quotes are read
incrementally. Before every tick (ours and the reference's, untimed) a tenth of the markets receive a new quote,
a tenth of those stamped before the previous tick (late rows), so each tick's incremental read has rows to
merge, as a live one does.
Reference, same run, same database and inputs: the original system's shape (seed_system.md §7.C) — the same
read, then a per-market Python loop (math.erf probability, integer fee, EV) and one INSERT per snapshot row.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.common import bench_line
from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import upsert
from kbtc.pipeline.edge_inputs import load_edge_inputs
from kbtc.pipeline.edges import EdgeSettings, LiveTickCache, compute_edge_tick

ASOF = 1_795_000_000_000
HOUR_MS = 3_600_000
Y = 31_536_000.0


def seed(path: Path, markets: int, spot_hz: float = 2.0) -> str:
    """A migrated SQLite file with `markets` KXBTCD strikes around $100k, their quotes, ~65 min of ticks."""
    url = f"sqlite:///{path}"
    upgrade_database(url)
    engine = make_engine(url)
    strikes = 100_000 + min(25.0, 50_000 / markets) * (np.arange(markets) - markets // 2)
    upsert(engine, "markets", pl.DataFrame({
        "market_ticker": [f"KXBTCD-E{i // 200}-T{k:.2f}" for i, k in enumerate(strikes)],
        "event_ticker": [f"KXBTCD-E{i // 200}" for i in range(markets)], "series_ticker": "KXBTCD",
        "status": "active", "strike_type": "greater", "floor_strike": strikes - 0.01,
        "open_ts": ASOF - 20 * HOUR_MS, "close_ts": ASOF + HOUR_MS, "fee_type": "quadratic", "fee_multiplier": 1.0,
        "price_level_structure": "linear_cent", "first_seen_ts": 0, "updated_ts": 0,
    }))
    rng = np.random.default_rng(3)
    n_quotes = markets * 20  # a history of quotes: the read must pick the latest per market
    bid = np.round(rng.uniform(2, 95, n_quotes))
    upsert(engine, "quotes", pl.DataFrame({
        "market_ticker": [f"KXBTCD-E{(i % markets) // 200}-T{strikes[i % markets]:.2f}" for i in range(n_quotes)],
        "quote_ts": ASOF - 300_000 + (np.arange(n_quotes) // markets) * 10_000 + 7,
        "received_ts": ASOF - 300_000, "source": "ws", "yes_bid_cents": bid, "yes_ask_cents": bid + 2.0,
    }))
    ts = np.arange(ASOF - 65 * 60_000, ASOF + 600_000, int(1000 / spot_hz))
    price = 100_000 * np.exp(np.cumsum(rng.normal(0, 0.5 / 5615.7 / math.sqrt(spot_hz), ts.size)))
    upsert(engine, "spot_ticks", pl.DataFrame({
        "product_id": "BTC-USD", "source": "coinbase_advanced", "tick_ts": ts, "venue_time_ns": ts * 1_000_000,
        "received_ts": ts, "price": price, "best_bid": price - 0.005, "best_ask": price + 0.005,
    }))
    engine.dispose()
    return url


def preload_history(path: Path, settings: EdgeSettings, ticks: int, cadence_ms: int = 10_000) -> None:
    """`ticks` earlier ticks' rows in `edges` and `edge_snapshots`, as a database that has been running for a
    while holds: one real tick a second before the measured ones, copied to `ticks` times before it,
    `cadence_ms` apart (untimed).

    Tables indexed by market first take one entry per market in each market's run every tick, so a tick's write
    cost grows with the history held; a fresh file hides that.
    """
    if ticks <= 0:
        return
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    first = ASOF - 1_000
    compute_edge_tick(engine, first, settings)
    engine.dispose()
    conn = sqlite3.connect(path)
    for table in ("edges", "edge_snapshots"):
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        shifted = ", ".join(f"asof_ts - {cadence_ms} * k" if c == "asof_ts" else c for c in columns)
        conn.execute(
            f"WITH RECURSIVE ks(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM ks WHERE k < {ticks}) "
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {shifted} FROM {table}, ks WHERE asof_ts = {first}"
        )
    conn.commit()
    conn.close()


def reference_tick(url: str, path: Path, asof: int, settings: EdgeSettings) -> None:
    """The same read, then row-at-a-time pricing and one INSERT per snapshot (the original's SQLite path)."""
    engine = make_engine(url)
    inputs = load_edge_inputs(engine, asof, series=settings.params.series, product_id=settings.product_id)
    engine.dispose()
    spot = float(inputs.spot["price"][-1])
    sigma = 0.5
    quotes = {row["market_ticker"]: row for row in inputs.quotes.iter_rows(named=True)}
    conn = sqlite3.connect(path)
    for market in inputs.markets.iter_rows(named=True):
        quote = quotes.get(market["market_ticker"])
        if quote is None:
            continue
        horizon = max((market["close_ts"] - asof) / 1000.0, 0.0)
        s = sigma * math.sqrt(horizon / Y)
        z = (math.log(market["floor_strike"] / spot) + 0.5 * s * s) / s
        p = 1 - 0.5 * (1 + math.erf(z / math.sqrt(2)))
        evs = []
        for ask, q in ((quote["yes_ask_cents"], p), (100.0 - quote["yes_bid_cents"], 1 - p)):
            pu = round(ask * 100)
            fee = -(-7 * 10_000 * 100 * pu * (10_000 - pu) // 10**14) / 100
            evs.append(q - ask / 100 - fee)
        conn.execute(
            "INSERT INTO edge_snapshots (asof_ts, market_ticker, event_ticker, series_ticker, spot_usd, "
            "sigma_annual, p_model, ev_yes_dollars, ev_no_dollars, model_version) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (asof, market["market_ticker"], market["event_ticker"], market["series_ticker"], spot, sigma, p,
             evs[0], evs[1], "reference"),
        )
    conn.commit()
    conn.close()


def arrive_quotes(url: str, markets: int, asof: int) -> None:
    """New quotes for a tenth of the markets (a different tenth each second), a tenth of them stamped 5 s late."""
    engine = make_engine(url)
    strikes = 100_000 + min(25.0, 50_000 / markets) * (np.arange(markets) - markets // 2)
    first = (asof // 1_000) % 10
    index = np.arange(first, markets, 10)
    late = np.arange(index.size) % 10 == 0
    bid = np.round(np.random.default_rng(asof % 2**32).uniform(2, 95, index.size))
    upsert(engine, "quotes", pl.DataFrame({
        "market_ticker": [f"KXBTCD-E{i // 200}-T{strikes[i]:.2f}" for i in index],
        "quote_ts": np.where(late, asof - 5_000, asof - 300), "received_ts": asof - 200, "source": "ws",
        "yes_bid_cents": bid, "yes_ask_cents": bid + 2.0,
    }), on_conflict="ignore")
    engine.dispose()


def _times(
    run: Callable[[int], object], asofs: list[int], before: Callable[[int], None]
) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (all threads) of each tick after a warm-up one."""
    before(asofs[0])
    run(asofs[0])  # warm-up
    times, cpu = [], []
    for asof in asofs[1:]:
        before(asof)
        start, start_cpu = time.perf_counter(), time.process_time()
        run(asof)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu


REPEATS = {500: 15, 10_000: 5}


def bench_ticks(tmp: Path, market_counts: Sequence[int] = (500, 10_000), history_ticks: int = 0) -> None:
    """(b) a live tick of 500 markets; (c) 10k markets per tick — ours vs the reference, same databases.

    Prints the median (the target's statistic), the best tick (less sensitive to a shared machine's load) and
    the median CPU time per tick. `history_ticks`: earlier ticks' rows already in the database
    (`preload_history`); the lines' names then end in `_after_{history_ticks}_ticks`.
    """
    suffix = f"_after_{history_ticks}_ticks" if history_ticks > 0 else ""
    for markets in market_counts:
        repeats = REPEATS[markets]
        path = tmp / f"edges_{markets}.sqlite"
        url = seed(path, markets)
        settings = EdgeSettings()
        preload_history(path, settings, history_ticks)
        engine = make_engine(url)
        asofs = [ASOF + 1_000 * i for i in range(repeats + 1)]
        cache = LiveTickCache()  # as run-live-edges: the warm-up tick reads everything, later ticks reuse it
        arrive = lambda t, u=url, n=markets: arrive_quotes(u, n, t)  # noqa: E731
        ours, ours_cpu = _times(lambda t, e=engine, s=settings, c=cache: compute_edge_tick(e, t, s, c), asofs,
                                arrive)
        engine.dispose()
        ref_asofs = [ASOF + 500 + 1_000 * i for i in range(repeats + 1)]
        reference, reference_cpu = _times(lambda t, u=url, p=path, s=settings: reference_tick(u, p, t, s),
                                          ref_asofs, arrive)
        label = "live_tick_500_markets" if markets == 500 else "tick_10k_markets"
        print(bench_line(f"{label}_cpu_ms{suffix}", statistics.median(ours_cpu) * 1000, "ms CPU",
                         statistics.median(reference_cpu) * 1000, higher_is_better=False))
        for stat, pick in (("", statistics.median), ("_best", min)):
            if markets == 500:
                print(bench_line(f"live_tick_500_markets{stat}_ms{suffix}", pick(ours) * 1000, "ms",
                                 pick(reference) * 1000, higher_is_better=False))
            else:
                print(bench_line(f"tick_10k_markets{stat}_per_s{suffix}", markets / pick(ours), "markets/s",
                                 markets / pick(reference)))
