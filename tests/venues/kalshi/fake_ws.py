"""A minimal Kalshi WebSocket server for tests: checks the signed handshake, speaks the documented messages.

It keeps the true order book of each market so a client's book can be compared after gap recovery, and lets
tests inject gaps, errors and abrupt drops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from kbtc.venues.kalshi.orderbook import OrderBook

WS_PATH = "/trade-api/ws/v2"


class FakeKalshiWs:
    """Serve on 127.0.0.1 (free port); `url` is the WebSocket URL to give the client."""

    def __init__(self, public_key: rsa.RSAPublicKey | None = None) -> None:
        self.public_key = public_key
        self.books: dict[str, OrderBook] = {}
        self.commands: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.handshake_timestamps: list[str] = []
        self.sids: dict[str, int] = {}
        self.seq: dict[int, int] = {}
        self.on_subscribed: Callable[[ServerConnection, str, list[str]], Any] | None = None
        self._server: Server | None = None
        self.subscribed = asyncio.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        return f"ws://127.0.0.1:{port}{WS_PATH}"

    async def __aenter__(self) -> FakeKalshiWs:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check_auth)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _check_auth(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.public_key is None:
            return None
        try:
            ts = request.headers["KALSHI-ACCESS-TIMESTAMP"]
            signature = base64.b64decode(request.headers["KALSHI-ACCESS-SIGNATURE"])
            self.public_key.verify(
                signature, f"{ts}GET{request.path.split('?')[0]}".encode(),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256(),
            )
        except (KeyError, InvalidSignature, ValueError):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid signature\n")
        self.handshake_timestamps.append(ts)
        return None

    def book(self, ticker: str) -> OrderBook:
        if ticker not in self.books:
            book = self.books[ticker] = OrderBook(ticker)
            book.apply_snapshot({"yes_dollars_fp": [["0.4000", "10.00"], ["0.4100", "5.00"]],
                                 "no_dollars_fp": [["0.5500", "7.00"]]})
        return self.books[ticker]

    def next_seq(self, sid: int) -> int:
        self.seq[sid] = self.seq.get(sid, 0) + 1
        return self.seq[sid]

    def snapshot_frame(self, ticker: str) -> str:
        sid = self.sids["orderbook_delta"]
        book = self.book(ticker)
        msg = {"market_ticker": ticker, "market_id": "id-" + ticker,
               "yes_dollars_fp": [[f"{u / 10000:.4f}", f"{s:.2f}"] for u, s in sorted(book.yes_bids.items())],
               "no_dollars_fp": [[f"{u / 10000:.4f}", f"{s:.2f}"] for u, s in sorted(book.no_bids.items())]}
        return json.dumps({"type": "orderbook_snapshot", "sid": sid, "seq": self.next_seq(sid), "msg": msg})

    def delta_frame(self, ticker: str, side: str, price: str, delta: str, *, skip_seq: bool = False) -> str:
        """Apply a delta to the true book and return its frame (`skip_seq` burns a seq: a lost message)."""
        sid = self.sids["orderbook_delta"]
        self.book(ticker).apply_delta(side, price, delta)
        if skip_seq:
            self.next_seq(sid)
        msg = {"market_ticker": ticker, "price_dollars": price, "delta_fp": delta, "side": side,
               "ts_ms": time.time_ns() // 1_000_000}
        return json.dumps({"type": "orderbook_delta", "sid": sid, "seq": self.next_seq(sid), "msg": msg})

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.sids.clear()
        self.seq.clear()
        with contextlib.suppress(ConnectionClosed):
            await self._serve(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        async for raw in ws:
            command = json.loads(raw)
            self.commands.append(command)
            params = command.get("params", {})
            if command.get("cmd") == "subscribe":
                channel = params["channels"][0]
                sid = self.sids[channel] = len(self.sids) + 1
                await ws.send(json.dumps({"id": command["id"], "type": "subscribed",
                                          "msg": {"channel": channel, "sid": sid}}))
                tickers = params.get("market_tickers", [])
                if channel == "orderbook_delta":
                    for ticker in tickers:
                        await ws.send(self.snapshot_frame(ticker))
                if self.on_subscribed is not None:
                    await self.on_subscribed(ws, channel, tickers)
                if channel == "market_lifecycle_v2":
                    self.subscribed.set()
            elif command.get("cmd") == "update_subscription":
                sid = params["sids"][0]
                reply: dict[str, Any] = {"id": command["id"], "sid": sid, "type": "ok",
                                         "msg": {"market_tickers": params["market_tickers"]}}
                if sid == self.sids.get("orderbook_delta"):
                    reply["seq"] = self.next_seq(sid)
                await ws.send(json.dumps(reply))
                if params["action"] == "get_snapshot" or (
                    params["action"] == "add_markets" and sid == self.sids.get("orderbook_delta")
                ):
                    for ticker in params["market_tickers"]:
                        await ws.send(self.snapshot_frame(ticker))
