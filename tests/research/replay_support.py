"""A small synthetic recording (Kalshi WS ticker + lifecycle, Coinbase Exchange ticker) and its catalog."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from kbtc.db.engine import make_engine
from kbtc.db.migrate import upgrade_database
from kbtc.db.store import upsert
from kbtc.pipeline.edges import EdgeSettings
from kbtc.pipeline.replay import run_replay

START_MS = 1_795_000_000_000  # 2026-11-18T...; a whole multiple of 10 s
HOUR_MS = 3_600_000
EVENT = "KXBTCD-26NOV18H19"
STRIKES = (99_500.0, 99_750.0, 100_000.0, 100_250.0, 100_500.0)


def tickers() -> list[str]:
    return [f"{EVENT}-T{strike:.2f}" for strike in STRIKES]


def seed_catalog(engine: Engine, start_ms: int = START_MS) -> None:
    """The catalog a refresh would have stored before the recording: one KXBTCD event of five strikes."""
    rows = [
        {"market_ticker": ticker, "event_ticker": EVENT, "series_ticker": "KXBTCD", "status": "active",
         "strike_type": "greater", "floor_strike": strike, "open_ts": start_ms - HOUR_MS,
         "close_ts": start_ms + HOUR_MS, "fee_type": "quadratic", "fee_multiplier": 1.0,
         "price_level_structure": "linear_cent", "first_seen_ts": start_ms - HOUR_MS,
         "updated_ts": start_ms - HOUR_MS}
        for ticker, strike in zip(tickers(), STRIKES, strict=True)
    ]
    upsert(engine, "markets", rows)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def spot_message(ts_ms: int, price: float, sequence: int) -> dict[str, Any]:
    return {"type": "ticker", "sequence": sequence, "product_id": "BTC-USD", "price": f"{price:.2f}",
            "best_bid": f"{price - 0.01:.2f}", "best_ask": f"{price + 0.01:.2f}", "best_bid_size": "0.5",
            "best_ask_size": "0.5", "time": _iso(ts_ms)}


def ticker_message(ticker: str, ts_ms: int, bid_cents: int, seq: int) -> dict[str, Any]:
    return {"type": "ticker", "sid": 2, "seq": seq,
            "msg": {"market_ticker": ticker, "yes_bid_dollars": f"{bid_cents / 100:.4f}",
                    "yes_ask_dollars": f"{(bid_cents + 2) / 100:.4f}", "yes_bid_size_fp": "100.00",
                    "yes_ask_size_fp": "100.00", "ts_ms": ts_ms}}


def lifecycle_message(ticker: str, event_type: str, ts_ms: int, **extra: Any) -> dict[str, Any]:
    return {"type": "market_lifecycle_v2", "sid": 3,
            "msg": {"market_ticker": ticker, "event_type": event_type, **extra}, "sending_ts_ms": ts_ms}


def recording_lines(start_ms: int = START_MS, seconds: int = 600, seed: int = 1,
                    spot_shift: float = 0.0) -> list[tuple[int, str, dict[str, Any]]]:
    """(received_ts, feed, message) in time order: 1 Hz spot, a ticker per market every 2 s."""
    rng = np.random.default_rng(seed)
    lines: list[tuple[int, str, dict[str, Any]]] = []
    price = 100_000.0 + spot_shift
    seq = 0
    for second in range(seconds):
        ts = start_ms + second * 1000
        price *= float(np.exp(rng.normal(0, 0.0002)))
        lines.append((ts + 15, "coinbase", spot_message(ts, price, 1000 + second)))
        if second % 2 == 0:
            for i, ticker in enumerate(tickers()):
                seq += 1
                fair = 1 / (1 + np.exp((STRIKES[i] - price) / 150.0))
                bid = int(np.clip(round(fair * 100) - 1, 1, 97))
                lines.append((ts + 30 + i, "kalshi", ticker_message(ticker, ts + 20 + i, bid, seq)))
    return lines


def write_jsonl(path: Path, lines: list[tuple[int, str, dict[str, Any]]], *, style: str = "mixed") -> Path:
    """Write lines in the documented JSONL formats: `tape` (raw text), `wrapped` (raw object), `bare`, `mixed`."""
    with path.open("w") as handle:
        for n, (received_ts, feed, message) in enumerate(lines):
            kind = ("tape", "wrapped", "bare")[n % 3] if style == "mixed" else style
            if kind == "tape":
                line = {"received_ts": received_ts, "feed": feed, "connection_id": "c1", "raw": json.dumps(message)}
            elif kind == "wrapped":
                line = {"received_ts": received_ts, "feed": feed, "connection_id": "c1", "raw": message}
            else:
                line = {**message, "received_ts": received_ts}
            handle.write(json.dumps(line) + "\n")
    return path


def replayed_database(tmp: Path, settings: EdgeSettings, *, cadence_s: float, yes_markets: int) -> Engine:
    """A fresh database with the catalog and the recording replayed into it (edges every `cadence_s`), the first
    `yes_markets` strikes settled YES and the rest NO. The caller disposes of the engine."""
    url = f"sqlite:///{tmp / 'db.sqlite'}"
    upgrade_database(url)
    engine = make_engine(url)
    seed_catalog(engine)
    settled = tmp / "settled.csv"
    settled.write_text("ticker,result\n" + "".join(
        f"{t},{'yes' if i < yes_markets else 'no'}\n" for i, t in enumerate(tickers())))
    run_replay(engine, [write_jsonl(tmp / "rec.jsonl", recording_lines())], settings, cadence_s=cadence_s,
               settlements=settled)
    return engine
