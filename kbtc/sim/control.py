"""The simulator's own control endpoints (not part of any venue API), served next to the Kalshi REST API.

- `GET /_sim/faults` → `{"summary": {...}, "pending": [...]}`
- `POST /_sim/faults` with `{"target", "kind", "count"?, "duration_s"?, "params"?}` → queue a fault
- `DELETE /_sim/faults` → drop pending faults
- `POST /_sim/markets/{ticker}/pause`, `/resume`, `/close` (`{"close_ts": epoch seconds}`, default now)
- `GET /_sim/state` → the simulator's clock, index and Coinbase price
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kbtc.sim.faults import FaultKind, FaultPlan, FaultTarget
from kbtc.sim.kalshi.venue import KalshiVenue


class Control:
    """Handlers for `/_sim/*`."""

    def __init__(self, venue: KalshiVenue, faults: FaultPlan) -> None:
        self.venue = venue
        self.faults = faults

    def routes(self) -> list[Route]:
        """The control routes."""
        return [
            Route("/_sim/faults", self.faults_endpoint, methods=["GET", "POST", "DELETE"]),
            Route("/_sim/markets/{ticker}/{action}", self.market_action, methods=["POST"]),
            Route("/_sim/state", self.state, methods=["GET"]),
        ]

    async def faults_endpoint(self, request: Request) -> JSONResponse:
        """Inspect, inject or clear faults."""
        if request.method == "DELETE":
            self.faults.clear()
        elif request.method == "POST":
            try:
                spec: dict[str, Any] = json.loads(await request.body())
                fault = self.faults.inject(
                    FaultTarget(spec["target"]), FaultKind(spec["kind"]), count=int(spec.get("count", 1)),
                    duration_s=float(spec.get("duration_s", 0.0)), **dict(spec.get("params", {})),
                )
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse({"error": f"bad fault: {exc}",
                                     "targets": [t.value for t in FaultTarget],
                                     "kinds": [k.value for k in FaultKind]}, status_code=400)
            return JSONResponse({"injected": {"target": fault.target, "kind": fault.kind, "count": fault.count}})
        pending = [{"target": f.target, "kind": f.kind, "count": f.count, "duration_s": f.duration_s,
                    "params": f.params} for f in self.faults.pending()]
        return JSONResponse({"summary": self.faults.summary(), "pending": pending})

    async def market_action(self, request: Request) -> JSONResponse:
        """Pause, resume or close a market early."""
        now_ms = self.venue.now_ms()
        catalog = self.venue.catalog
        market = catalog.market(request.path_params["ticker"], now_ms)
        if market is None:
            return JSONResponse({"error": "market not found"}, status_code=404)
        action = request.path_params["action"]
        if action == "pause":
            catalog.pause(market, now_ms)
        elif action == "resume":
            catalog.resume(market, now_ms)
        elif action == "close":
            raw = await request.body()
            try:
                close_s = json.loads(raw).get("close_ts", now_ms // 1000) if raw else now_ms // 1000
                catalog.close_early(market, int(close_s) * 1000, now_ms)
            except (ValueError, AttributeError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        else:
            return JSONResponse({"error": f"unknown action {action!r}"}, status_code=404)
        return JSONResponse({"ticker": market.ticker, "status": catalog.status(market, now_ms)})

    async def state(self, request: Request) -> JSONResponse:
        """Clock and prices, for demos and debugging."""
        now_ms = self.venue.now_ms()
        source = self.venue.catalog.source
        return JSONResponse({"now_ms": now_ms, "index_usd": source.index_usd(now_ms),
                             "coinbase_usd": source.coinbase_usd(now_ms), "avg_60s_usd": source.average_60s(now_ms)})
