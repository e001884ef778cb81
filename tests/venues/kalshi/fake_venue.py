"""A tiny in-memory Kalshi REST venue for httpx.MockTransport, speaking the documented shapes (§3)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import httpx
from kalshi_samples import sample

from kbtc.venues.kalshi.parsing import time_ms

_FILTER_TO_STATUS = {"unopened": "initialized", "open": "active", "paused": "inactive", "settled": "finalized"}


def market(ticker: str, **fields: Any) -> dict[str, Any]:
    """The documented KXBTCD market object with a new ticker (event = ticker minus the last part)."""
    base = copy.deepcopy(sample("event_with_nested_markets_shape.json")["markets"][0])
    base.update(ticker=ticker, event_ticker=ticker.rsplit("-", 1)[0])
    base.update(fields)
    return base


@dataclass
class FakeKalshi:
    """Series, events and markets served with cursor paging; `fail` maps a path prefix to a status code."""

    series: dict[str, dict[str, Any]] = field(default_factory=dict)
    markets: list[dict[str, Any]] = field(default_factory=list)
    event_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    cutoff_ts: str = "2020-01-01T00:00:00Z"

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def _page(self, items: list[Any], key: str, params: dict[str, str]) -> httpx.Response:
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        end = start + limit
        return httpx.Response(200, json={key: items[start:end], "cursor": str(end) if end < len(items) else ""})

    def _filtered(self, params: dict[str, str]) -> list[dict[str, Any]]:
        out = self.markets
        if "series_ticker" in params:
            out = [m for m in out if m["event_ticker"].split("-")[0] == params["series_ticker"]]
        if "event_ticker" in params:
            out = [m for m in out if m["event_ticker"] == params["event_ticker"]]
        if "tickers" in params:
            wanted = set(params["tickers"].split(","))
            out = [m for m in out if m["ticker"] in wanted]
        if "status" in params:
            out = [m for m in out if m["status"] == _FILTER_TO_STATUS.get(params["status"], params["status"])]
        if "min_settled_ts" in params:
            lo, hi = int(params["min_settled_ts"]) * 1000, int(params.get("max_settled_ts", 10**12)) * 1000
            out = [m for m in out if m.get("settlement_ts") and lo <= (time_ms(m["settlement_ts"]) or 0) <= hi]
        return out

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/trade-api/v2")
        for prefix, status in self.fail.items():
            if path.startswith(prefix):
                return httpx.Response(status, json={"code": "boom", "message": "injected"})
        params = dict(request.url.params)
        if path.startswith("/series/"):
            ticker = path.split("/")[2]
            if ticker not in self.series:
                return httpx.Response(404, json={"code": "not_found", "message": "series not found"})
            return httpx.Response(200, json={"series": self.series[ticker]})
        if path == "/events":
            markets = self._filtered({k: v for k, v in params.items() if k in ("series_ticker",)})
            events: dict[str, dict[str, Any]] = {}
            for m in markets:
                ticker = m["event_ticker"]
                event = events.setdefault(ticker, {"event_ticker": ticker, "series_ticker": ticker.split("-")[0],
                                                   "title": "t", "mutually_exclusive": False, "markets": [],
                                                   **self.event_overrides.get(ticker, {})})
                event["markets"].append(m)
            listed = [e for e in events.values()
                      if "status" not in params or any(self._filtered({"status": params["status"]}) and
                                                       mm["status"] == _FILTER_TO_STATUS.get(params["status"])
                                                       for mm in e["markets"])]
            if params.get("with_nested_markets") != "true":
                listed = [{k: v for k, v in e.items() if k != "markets"} for e in listed]
            return self._page(listed, "events", params)
        if path == "/markets":
            return self._page(self._filtered(params), "markets", params)
        if path == "/historical/cutoff":
            return httpx.Response(200, json={"market_settled_ts": self.cutoff_ts})
        if path == "/historical/markets":
            return self._page([], "markets", params)
        return httpx.Response(404, json={"code": "not_found", "message": path})
