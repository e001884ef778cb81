"""Test helpers: a minimal documented-protocol Coinbase WebSocket server and a recording sink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kbtc.venues.backoff import Backoff
from kbtc.venues.coinbase.messages import SpotTick
from kbtc.venues.coinbase.ws import FeedConfig
from kbtc.venues.records import FeedEventKind, FeedEventRecord, RejectRecord


def advanced_ticker(seq: int, price: float, ts: str = "2026-11-25T10:00:00.123456789Z", **extra: Any) -> str:
    """An Advanced Trade ticker frame shaped like samples/coinbase/advanced_trade_ws_ticker.json."""
    ticker = {
        "type": "ticker",
        "product_id": "BTC-USD",
        "price": f"{price:.2f}",
        "volume_24_h": "16038.28770938",
        "low_24_h": "21835.29",
        "high_24_h": "23011.18",
        "low_52_w": "15460",
        "high_52_w": "48240",
        "price_percent_chg_24_h": "-4.15775596190603",
        "best_bid": f"{price - 0.5:.2f}",
        "best_bid_quantity": "0.5",
        "best_ask": f"{price + 0.5:.2f}",
        "best_ask_quantity": "0.7",
        **extra,
    }
    return json.dumps(
        {
            "channel": "ticker",
            "client_id": "",
            "timestamp": ts,
            "sequence_num": seq,
            "events": [{"type": "update", "tickers": [ticker]}],
        }
    )


def advanced_heartbeat(seq: int, counter: int | str) -> str:
    """An Advanced Trade heartbeats frame (counter as int or string, both occur)."""
    return json.dumps(
        {
            "channel": "heartbeats",
            "client_id": "",
            "timestamp": "2026-11-25T10:00:00.5Z",
            "sequence_num": seq,
            "events": [{"current_time": "2026-11-25 10:00:00.5 +0000 UTC m=+1.0", "heartbeat_counter": counter}],
        }
    )


def nth_ts(i: int) -> str:
    """A distinct RFC 3339 timestamp per i (ms apart)."""
    seconds, ms = divmod(i, 1000)
    minutes, seconds = divmod(seconds, 60)
    return f"2026-11-25T10:{minutes:02d}:{seconds:02d}.{ms:03d}000001Z"


Handler = Callable[[ServerConnection, int, list[dict[str, Any]]], Awaitable[None]]


@dataclass
class DocServer:
    """Runs `handler(ws, connection_index, subscribe_messages)` for each connection."""

    handler: Handler
    url: str = ""
    connections: int = 0
    subscriptions: list[list[dict[str, Any]]] = field(default_factory=list)
    expected_subscribes: int = 2

    async def start(self) -> Server:
        """Listen on a free port of 127.0.0.1 and set `url`."""
        server = await serve(self._serve, "127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return server

    async def _serve(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        subs: list[dict[str, Any]] = []
        # The venue requires the subscriptions within 5 s of connecting.
        async with asyncio.timeout(5):
            while len(subs) < self.expected_subscribes:
                subs.append(json.loads(await ws.recv()))
        self.subscriptions.append(subs)
        with contextlib.suppress(ConnectionClosed):  # the client went away: the script simply ends
            await self.handler(ws, index, subs)


def fast_config(url: str, **changes: Any) -> FeedConfig:
    """Feed settings scaled down so watchdog and reconnect paths run in well under a second."""
    values: dict[str, Any] = {
        "url": url,
        "stale_s": 0.4,
        "heartbeat_timeout_s": 0.6,
        "backoff": Backoff(base_s=0.02, cap_s=0.1),
        "open_timeout_s": 2.0,
        "watchdog_interval_s": 0.05,
        "healthy_after_s": 60.0,
    }
    values.update(changes)
    return FeedConfig(**values)


class RecordingSink:
    """Collects everything the client delivers; `wait_for` polls a condition with a timeout."""

    def __init__(self) -> None:
        self.frames: list[tuple[str | bytes, int, str]] = []
        self.ticks: list[SpotTick] = []
        self.events: list[FeedEventRecord] = []
        self.rejects: list[RejectRecord] = []

    async def on_frame(self, raw: str | bytes, received_ts: int, connection_id: str) -> None:
        self.frames.append((raw, received_ts, connection_id))

    async def on_ticks(self, ticks: list[SpotTick]) -> None:
        self.ticks.extend(ticks)

    async def on_event(self, event: FeedEventRecord) -> None:
        self.events.append(event)

    async def on_rejects(self, rejects: list[RejectRecord]) -> None:
        self.rejects.extend(rejects)

    def kinds(self, kind: FeedEventKind) -> list[FeedEventRecord]:
        return [e for e in self.events if e.kind is kind]

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():  # noqa: ASYNC110 — polls state the client mutates
                await asyncio.sleep(0.01)


async def start_collector(url: str, tmp: Path, *extra: str) -> asyncio.subprocess.Process:
    """`kbtc collect --coinbase` in a subprocess, its database, data and logs under `tmp`."""
    env = {
        **os.environ,
        "DB_PATH": str(tmp / "kbtc.sqlite"),
        "DATA_DIR": str(tmp / "data"),
        "LOG_PATH": str(tmp / "logs" / "app.jsonl"),
        "COINBASE_WS_URL": url,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kbtc.cli", "collect", "--coinbase", *extra,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


def count(db: Path, sql: str) -> int:
    """One integer from an SQLite file (0 while it is missing or not migrated)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return 0


async def wait_rows(db: Path, minimum: int, timeout_s: float = 30) -> int:
    """Wait until `spot_ticks` holds `minimum` rows."""
    async with asyncio.timeout(timeout_s):
        while (n := count(db, "SELECT COUNT(*) FROM spot_ticks")) < minimum:  # noqa: ASYNC110 — another process writes
            await asyncio.sleep(0.05)
    return n
