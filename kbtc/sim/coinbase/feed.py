"""What both simulated Coinbase WebSocket feeds share: the server, the subscribe deadline, the clocks.

A client must subscribe within `subscribe_timeout_s` of connecting (5 s on both venues, §1.2 and §2) or is
closed with 1008 (the docs say only "disconnected"; the code is our choice). Ticks are published on the
tape's grid (`Tape.period_ms`), heartbeats once per second on whole seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kbtc.sim.coinbase.outbox import Outbox, OutFrame
from kbtc.sim.coinbase.tape import Tape, Tick
from kbtc.sim.faults import FaultPlan

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
SUBSCRIBE_TIMEOUT_CLOSE_CODE = 1008


@dataclass(slots=True, eq=False)  # identity semantics: sessions live in a set
class Session:
    """One client connection: its outbox and what it is subscribed to (channel → product ids)."""

    outbox: Outbox
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    last_frame_monotonic_ns: int = field(default_factory=time.monotonic_ns)

    def send(self, frame: OutFrame) -> None:
        """Queue a frame for this client."""
        self.last_frame_monotonic_ns = time.monotonic_ns()
        self.outbox.put(frame)


class FeedServer(ABC):
    """A WebSocket market-data feed on a free port of `host`, publishing the tape to subscribed sessions."""

    api: str  # "advanced_trade" | "exchange": the fault scope of this feed

    def __init__(
        self, tape: Tape, faults: FaultPlan, *, product_id: str, host: str, subscribe_timeout_s: float
    ) -> None:
        self.tape = tape
        self.faults = faults
        self.product_id = product_id
        self.host = host
        self.subscribe_timeout_s = subscribe_timeout_s
        self.sessions: set[Session] = set()
        self._server: Server | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        # The last tick handed to the sessions: snapshots stop there, so no trade is both in a snapshot and
        # in the update that follows it.
        self.published_index = tape.tick_index_at(time.time_ns() // NS_PER_MS)
        self._started_monotonic_ns = time.monotonic_ns()

    @property
    def url(self) -> str:
        """`ws://host:port` of the running server."""
        if self._server is None:
            raise RuntimeError("the feed is not running")
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://{self.host}:{port}"

    async def start(self) -> None:
        """Listen on a port chosen by the OS and start publishing."""
        self._server = await serve(self._handle, self.host, 0)
        self._loops = [asyncio.create_task(self._tick_loop()), asyncio.create_task(self._heartbeat_loop())]

    async def stop(self) -> None:
        """Stop publishing, close every connection and the listening socket."""
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def close_session(self, session: Session, code: int, reason: str) -> None:
        """Close a client's connection with a close frame, from synchronous code."""
        task = asyncio.get_running_loop().create_task(session.outbox.connection.close(code, reason))
        self._closing.add(task)  # keep a reference until done, or the task may be collected mid-close
        task.add_done_callback(self._closing.discard)

    def monotonic_ns(self) -> int:
        """Nanoseconds since this feed started (the `m=+…` reading of Go's time string)."""
        return time.monotonic_ns() - self._started_monotonic_ns

    async def _handle(self, connection: ServerConnection) -> None:
        session = Session(Outbox(connection, self.faults, api=self.api))
        sender = asyncio.create_task(session.outbox.run())
        self.sessions.add(session)
        try:
            async with asyncio.timeout(self.subscribe_timeout_s):
                while not session.subscriptions:
                    self.on_message(session, await connection.recv())
            async for message in connection:
                self.on_message(session, message)
        except TimeoutError:
            await connection.close(SUBSCRIBE_TIMEOUT_CLOSE_CODE, "subscribe timeout")
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _tick_loop(self) -> None:
        period_ms = self.tape.period_ms
        index = self.published_index = time.time_ns() // NS_PER_MS // period_ms
        while True:
            # The next grid point, or the present one if the loop fell behind: publish now, not a backlog.
            index = max(index + 1, time.time_ns() // NS_PER_MS // period_ms)
            await _sleep_until_ns(index * period_ms * NS_PER_MS)
            if self.sessions:
                self.on_tick(self.tape.tick(index))
            self.published_index = index

    async def _heartbeat_loop(self) -> None:
        counter = 0
        second = time.time_ns() // NS_PER_S
        while True:
            second = max(second + 1, time.time_ns() // NS_PER_S)
            await _sleep_until_ns(second * NS_PER_S)
            counter += 1
            if self.sessions:
                self.on_heartbeat(counter, time.time_ns())

    @abstractmethod
    def on_message(self, session: Session, message: str | bytes) -> None:
        """Handle one client message (subscribe, unsubscribe, anything else)."""

    @abstractmethod
    def on_tick(self, tick: Tick) -> None:
        """Publish one tick of the tape to subscribed sessions."""

    @abstractmethod
    def on_heartbeat(self, counter: int, now_ns: int) -> None:
        """Publish the once-a-second heartbeat to subscribed sessions."""


async def _sleep_until_ns(epoch_ns: int) -> None:
    """Sleep until the wall clock reaches `epoch_ns`.

    The loop's timers run on the monotonic clock and may fire a hair early against the wall clock, so a
    second short sleep tops up whatever is left.
    """
    for _ in range(2):
        delay_ns = epoch_ns - time.time_ns()
        if delay_ns > 0:
            await asyncio.sleep(delay_ns / NS_PER_S)
