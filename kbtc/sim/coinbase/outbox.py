"""One connection's outgoing frames, and the WebSocket faults applied as they leave.

Every frame passes through `Outbox.run`, which asks the `FaultPlan` (target `COINBASE_WS`, scoped by
`fault_scope`) before each send:

- `disconnect_abrupt`: the TCP connection is aborted, no close frame (a 1006 for the client);
- `disconnect_clean`: a close frame (`code` param, default 1001 "going away", as service restarts send);
- `stall`: nothing at all is sent for `duration_s` (0 = until the client gives up), heartbeats included;
  frames produced meanwhile are discarded, so sequence numbers resume without a gap. With `channel=` (e.g.
  `"ticker"`) only that channel falls silent for `duration_s` (default 15 s) while the others, heartbeats
  included, keep flowing: a data stall on a live socket. Its frames are discarded the same way;
- `skip_seq`: the frame is dropped after taking its `sequence_num` — the client sees a gap;
- `duplicate`: the frame is sent twice, same sequence number; `reorder`: it is held and sent after the next;
- `malformed_json`: half of the frame's text is sent; it still used a sequence number;
- `unknown_fields`: extra fields (param `fields`, a dict) in the envelope, events and records;
- `missing_fields`: documented fields left out (param `fields`, a list; else a per-channel default).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from kbtc.sim.coinbase.fault_scope import take_scoped
from kbtc.sim.faults import Fault, FaultKind, FaultPlan, FaultTarget

# What `missing_fields` drops when the fault names no fields: the schema drift seen in the wild (§1.4:
# the ticker had no bid/ask before 2024-04; §2: the first Exchange ticker lacks trade fields).
DEFAULT_MISSING_FIELDS: dict[str, tuple[str, ...]] = {
    "ticker": ("best_bid", "best_bid_quantity", "best_bid_size", "best_ask", "best_ask_quantity", "best_ask_size"),
    "market_trades": ("side", "time"),
    "heartbeats": ("heartbeat_counter",),
    "heartbeat": ("last_trade_id",),
    "subscriptions": ("events", "channels"),
}
DEFAULT_UNKNOWN_FIELDS: dict[str, Any] = {"sim_unlisted_field": "unlisted", "sim_unlisted_number": 7}
MAX_QUEUED_FRAMES = 10_000
DEFAULT_CHANNEL_STALL_S = 15.0


@dataclass(frozen=True, slots=True)
class OutFrame:
    """A frame to send: its channel (for fault scoping), its body, and whether it takes a `sequence_num`."""

    channel: str
    body: dict[str, Any]
    sequenced: bool = False


class Outbox:
    """Queue and send one connection's frames, numbering sequenced frames and applying pending faults."""

    def __init__(self, connection: ServerConnection, faults: FaultPlan, *, api: str) -> None:
        self.connection = connection
        self.faults = faults
        self.api = api
        self.next_sequence_num = 0
        self._queue: asyncio.Queue[OutFrame] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self._held: str | None = None
        self._stalled = False
        self._silent_until: dict[str, float] = {}  # channel → monotonic end of its stall

    def put(self, frame: OutFrame) -> None:
        """Queue a frame; while stalled nothing is queued, and a client that stops reading is dropped."""
        if self._stalled:
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            # A slow consumer: the venue cuts it off rather than buffer without bound.
            self.connection.transport.abort()

    async def run(self) -> None:
        """Send queued frames until the connection closes or a disconnect fault ends it."""
        try:
            while await self._emit(await self._queue.get()):
                pass
        except ConnectionClosed:
            return

    def _take(self, kind: FaultKind, frame: OutFrame) -> Fault | None:
        return take_scoped(self.faults, FaultTarget.COINBASE_WS, kind, api=self.api, channel=frame.channel)

    async def _emit(self, frame: OutFrame) -> bool:
        faulty = bool(self.faults.pending(FaultTarget.COINBASE_WS))
        if faulty:
            if self._take(FaultKind.DISCONNECT_ABRUPT, frame):
                self.connection.transport.abort()
                return False
            if (fault := self._take(FaultKind.DISCONNECT_CLEAN, frame)) is not None:
                await self.connection.close(int(fault.params.get("code", 1001)), str(fault.params.get("reason", "")))
                return False
            if (fault := self._take(FaultKind.STALL, frame)) is not None:
                if fault.params.get("channel") is None:
                    await self._stall(fault.duration_s)
                    return True
                self._silent_until[frame.channel] = time.monotonic() + (fault.duration_s or DEFAULT_CHANNEL_STALL_S)
        if self._silent_until.get(frame.channel, 0.0) > time.monotonic():
            return True  # a stalled channel: dropped before it takes a sequence number
        body = frame.body
        if frame.sequenced:
            body = {**body, "sequence_num": self.next_sequence_num}
            self.next_sequence_num += 1
        if faulty:
            if self._take(FaultKind.SKIP_SEQ, frame):
                return True
            if (fault := self._take(FaultKind.UNKNOWN_FIELDS, frame)) is not None:
                body = with_unknown_fields(body, fault.params.get("fields", DEFAULT_UNKNOWN_FIELDS))
            if (fault := self._take(FaultKind.MISSING_FIELDS, frame)) is not None:
                fields = fault.params.get("fields", DEFAULT_MISSING_FIELDS.get(frame.channel, ("timestamp",)))
                body = without_fields(body, frozenset(fields))
        text = json.dumps(body, separators=(",", ":"))
        if faulty and self._take(FaultKind.MALFORMED_JSON, frame):
            text = text[: len(text) // 2]
        if faulty and self._held is None and self._take(FaultKind.REORDER, frame):
            self._held = text
            return True
        copies = 2 if faulty and self._take(FaultKind.DUPLICATE, frame) else 1
        for _ in range(copies):
            await self.connection.send(text)
        if self._held is not None:
            held, self._held = self._held, None
            await self.connection.send(held)
        return True

    async def _stall(self, duration_s: float) -> None:
        self._stalled = True
        while not self._queue.empty():
            self._queue.get_nowait()
        if duration_s > 0:
            await asyncio.sleep(duration_s)
        else:
            await self.connection.wait_closed()
        self._stalled = False


def with_unknown_fields(body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`body` with `extra` added at the top level and to every event and record inside it."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(value, list):
            out[key] = [with_unknown_fields(item, extra) if isinstance(item, dict) else item for item in value]
        elif isinstance(value, dict) and key != "subscriptions":
            out[key] = with_unknown_fields(value, extra)
        else:
            out[key] = value
    return out | extra


def without_fields(body: dict[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    """`body` with every key in `fields` removed, at any depth."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in fields:
            continue
        if isinstance(value, list):
            out[key] = [without_fields(item, fields) if isinstance(item, dict) else item for item in value]
        elif isinstance(value, dict) and key != "subscriptions":
            out[key] = without_fields(value, fields)
        else:
            out[key] = value
    return out
