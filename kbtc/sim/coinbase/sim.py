"""`CoinbaseSim`: the simulated Coinbase venue — both WebSocket feeds and both candle APIs on 127.0.0.1."""

from __future__ import annotations

from types import TracebackType

from kbtc.sim.coinbase.candles import CandleBook
from kbtc.sim.coinbase.exchange_ws import ExchangeFeed
from kbtc.sim.coinbase.rest import CandleApi
from kbtc.sim.coinbase.tape import Tape
from kbtc.sim.coinbase.ws import AdvancedTradeFeed
from kbtc.sim.faults import FaultPlan
from kbtc.sim.spot_source import SpotSource


class CoinbaseSim:
    """Serve one product's Coinbase market data from a `SpotSource`, with faults from a `FaultPlan`.

    `ws_url` is the Advanced Trade market-data feed, `exchange_ws_url` the legacy Exchange feed, `rest_url`
    answers both candle endpoints; ports are chosen by the OS. Everything the venue publishes (trades, sizes,
    empty minutes, candles) is a function of `source`, `seed` and the clock, so two runs with the same seed
    serve the same history.

    Knobs: `ticks_per_second` (the trade batching grid, default 4: Coinbase batches `market_trades` over
    250 ms, §1.7), `subscribe_timeout_s` (5 s on the venue, §1.2), `empty_minute_fraction` (minutes without
    a trade: no ticker, no candle), `heartbeat_counter_as_int` (the docs show a string, live feeds an
    integer, §1.5), `idle_close_s` (an Advanced Trade subscription without heartbeats that received nothing
    for this long is closed — the docs' 60–90 s; None disables), `candle_history_s` (how far back candles
    exist) and `candle_samples_per_minute`. docs/SIMULATOR_COINBASE.md describes them and the faults.
    """

    def __init__(
        self,
        source: SpotSource,
        faults: FaultPlan,
        *,
        product_id: str = "BTC-USD",
        host: str = "127.0.0.1",
        seed: int = 0,
        ticks_per_second: float = 4.0,
        subscribe_timeout_s: float = 5.0,
        empty_minute_fraction: float = 0.01,
        heartbeat_counter_as_int: bool = False,
        idle_close_s: float | None = 75.0,
        candle_history_s: int = 2 * 86400,
        candle_samples_per_minute: int = 12,
    ) -> None:
        self.faults = faults
        self.product_id = product_id
        self.tape = Tape(source, seed=seed, ticks_per_second=ticks_per_second,
                         empty_minute_fraction=empty_minute_fraction)
        self.candles = CandleBook(self.tape, samples_per_minute=candle_samples_per_minute,
                                  history_s=candle_history_s)
        self.advanced_trade = AdvancedTradeFeed(
            self.tape, faults, product_id=product_id, host=host, subscribe_timeout_s=subscribe_timeout_s,
            heartbeat_counter_as_int=heartbeat_counter_as_int, idle_close_s=idle_close_s,
        )
        self.exchange = ExchangeFeed(self.tape, faults, product_id=product_id, host=host,
                                     subscribe_timeout_s=subscribe_timeout_s)
        self.rest = CandleApi(self.candles, faults, product_id=product_id, host=host)
        self._running = False

    @property
    def ws_url(self) -> str:
        """The Advanced Trade market-data WebSocket, `ws://host:port`."""
        return self.advanced_trade.url

    @property
    def exchange_ws_url(self) -> str:
        """The legacy Exchange WebSocket feed, `ws://host:port`."""
        return self.exchange.url

    @property
    def rest_url(self) -> str:
        """The HTTP server of both candle endpoints, `http://host:port`."""
        return self.rest.url

    async def start(self) -> None:
        """Start the three servers (a second call is a no-op)."""
        if self._running:
            return
        await self.advanced_trade.start()
        await self.exchange.start()
        await self.rest.start()
        self._running = True

    async def stop(self) -> None:
        """Stop the servers, closing every open connection."""
        await self.advanced_trade.stop()
        await self.exchange.stop()
        await self.rest.stop()
        self._running = False

    async def __aenter__(self) -> CoinbaseSim:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
