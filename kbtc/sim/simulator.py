"""`Simulator`: one object that builds the price path, the catalog and the venue servers on loopback.

    async with Simulator(SimConfig(seed=7, catalog=CatalogConfig(window_minutes=2))) as sim:
        sim.kalshi_rest_url, sim.kalshi_ws_url, sim.coinbase.ws_url, sim.control_url, sim.env()
        sim.faults.inject("kalshi_ws", "disconnect_abrupt")

Every server binds a free port on 127.0.0.1 unless a port is given. The clock is injectable (epoch-ms
callable), so tests can move time by hand and watch markets open, close and settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from kbtc.sim.coinbase import CoinbaseSim
from kbtc.sim.control import Control
from kbtc.sim.faults import FaultPlan
from kbtc.sim.kalshi.auth import ApiKey
from kbtc.sim.kalshi.rest import KalshiRest
from kbtc.sim.kalshi.venue import KalshiVenue
from kbtc.sim.kalshi.ws import KalshiWs
from kbtc.sim.market_maker import MakerConfig, MarketMaker
from kbtc.sim.markets import Catalog, CatalogConfig
from kbtc.sim.price import GbmSpotSource, PriceConfig, load_spot_tape


def wall_clock_ms() -> int:
    """Epoch milliseconds now."""
    return time.time_ns() // 1_000_000


class ManualClock:
    """A clock tests move by hand: `clock()` → epoch ms; `advance(seconds)`."""

    def __init__(self, start_ms: int) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> int:
        """Move forward and return the new time."""
        self.now_ms += round(seconds * 1000)
        return self.now_ms


@dataclass(frozen=True)
class SimConfig:
    """Everything that shapes a simulator run. `seed` overrides `price.seed`."""

    seed: int = 0
    spot_tape: Path | None = None  # replay the index from a recorded spot tape (CSV/Parquet: ts, price)
    price: PriceConfig = field(default_factory=PriceConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    maker: MakerConfig = field(default_factory=MakerConfig)
    legacy_cents: bool = False  # also serve the integer-cent fields removed on 2026-03-12
    api_keys: tuple[ApiKey, ...] = ()  # when given, every REST request and WS handshake must be signed
    rate_limit_per_s: float | None = 20.0  # Basic tier read budget; None disables the bucket
    max_skew_ms: int = 30_000
    host: str = "127.0.0.1"
    kalshi_rest_port: int = 0
    kalshi_ws_port: int = 0
    start_ms: int | None = None  # the simulator's "start" (default: the clock at construction)
    tick_interval_s: float = 0.25  # how often the WebSocket publisher looks at the clock
    ping_interval_s: float = 10.0  # Kalshi pings every 10 s
    ws_max_queue: int = 100_000  # per-connection backlog before error 25 (subscription buffer overflow)
    # The Coinbase feeds and candle APIs (kbtc.sim.coinbase) run on wall time from the same price path.
    coinbase: bool = True


class QuietServer(uvicorn.Server):
    """uvicorn without signal handling: the simulator's owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket (port 0: a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Simulator:
    """The exchange simulator: an async context manager (or `await start()` / `await stop()`)."""

    def __init__(self, config: SimConfig | None = None, *, clock: Callable[[], int] | None = None,
                 faults: FaultPlan | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or wall_clock_ms
        self.faults = faults or FaultPlan()
        start_ms = self.config.start_ms if self.config.start_ms is not None else self.clock()
        tape = None if self.config.spot_tape is None else load_spot_tape(self.config.spot_tape)
        self.source = GbmSpotSource(replace(self.config.price, seed=self.config.seed), start_ms, tape)
        self.catalog = Catalog(self.config.catalog, self.source)
        self.maker = MarketMaker(replace(self.config.maker, vol_annual=self.config.price.vol_annual),
                                 self.source, self.config.seed)
        self.venue = KalshiVenue(self.catalog, self.maker, self.clock, legacy_cents=self.config.legacy_cents)
        self._rest_server: QuietServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.kalshi_rest_port = 0
        self.kalshi_ws_port = 0
        keys = {k.key_id: k for k in self.config.api_keys}
        self.coinbase: CoinbaseSim | None = None
        if self.config.coinbase:
            # Candles reach back whole minutes: keep their history two minutes inside the path's origin.
            self.coinbase = CoinbaseSim(self.source, self.faults, host=self.config.host, seed=self.config.seed,
                                        candle_history_s=max(self.config.price.warmup_s - 120, 0))
        self.kalshi_ws = KalshiWs(self.venue, self.faults, keys=keys, tick_interval_s=self.config.tick_interval_s,
                                  ping_interval_s=self.config.ping_interval_s, max_skew_ms=self.config.max_skew_ms,
                                  max_queue=self.config.ws_max_queue)

    @property
    def kalshi_rest_url(self) -> str:
        """REST root including `/trade-api/v2`."""
        return f"http://{self.config.host}:{self.kalshi_rest_port}/trade-api/v2"

    @property
    def kalshi_ws_url(self) -> str:
        """The WebSocket URL."""
        return f"ws://{self.config.host}:{self.kalshi_ws_port}/trade-api/ws/v2"

    @property
    def control_url(self) -> str:
        """Base URL of the `/_sim` control endpoints."""
        return f"http://{self.config.host}:{self.kalshi_rest_port}/_sim"

    def env(self) -> dict[str, str]:
        """Environment variables that point kbtc at this simulator."""
        env = {"KALSHI_REST_URL": self.kalshi_rest_url, "KALSHI_WS_URL": self.kalshi_ws_url}
        if self.coinbase is not None:
            # One candle server answers both the Advanced Trade and the Exchange candle paths.
            env |= {"COINBASE_WS_URL": self.coinbase.ws_url, "COINBASE_REST_URL": self.coinbase.rest_url,
                    "COINBASE_EXCHANGE_WS_URL": self.coinbase.exchange_ws_url,
                    "COINBASE_EXCHANGE_REST_URL": self.coinbase.rest_url}
        return env

    async def start(self) -> None:
        """Bind the ports and start serving."""
        rest = KalshiRest(self.venue, self.faults, keys={k.key_id: k for k in self.config.api_keys},
                          rate_limit_per_s=self.config.rate_limit_per_s, max_skew_ms=self.config.max_skew_ms)
        app = Starlette(routes=[*rest.routes(), *Control(self.venue, self.faults).routes()])
        sock = bind_socket(self.config.host, self.config.kalshi_rest_port)
        self.kalshi_rest_port = sock.getsockname()[1]
        server = QuietServer(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
        self._rest_server = server
        self._tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not server.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
            await asyncio.sleep(0.01)
        ws_sock = bind_socket(self.config.host, self.config.kalshi_ws_port)
        self.kalshi_ws_port = ws_sock.getsockname()[1]
        await self.kalshi_ws.start(ws_sock)
        if self.coinbase is not None:
            await self.coinbase.start()

    async def stop(self) -> None:
        """Stop every server and background task."""
        await self.kalshi_ws.stop()
        if self.coinbase is not None:
            await self.coinbase.stop()
        if self._rest_server is not None:
            self._rest_server.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=5)
        self._tasks.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
