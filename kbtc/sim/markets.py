"""The simulated Kalshi BTC catalog: series, events and markets as a deterministic function of time.

Three series, shaped like the real ones (`reference/kalshi_api.md` §8):

- **KXBTC15M** — one `greater_or_equal` market per window. Its `floor_strike` is the simple average of the
  60 index prints before the window opened (rounded to 2 decimals), so it equals the previous window's
  `expiration_value`; it is published `strike_delay_s` after the open ("Target price: TBD" until then).
  Ties resolve YES ("at least").
- **KXBTCD** — per event, a ladder of `greater` markets at "X.99" strikes (`-T72749.99` = "$72,750 or above").
- **KXBTC** — per event, range buckets (`between`, `-B<mid>`) plus two open-ended tails (`-T…`).

The window length (`window_minutes`) and the event length (`event_minutes`) are knobs, so a demo can list
2-minute windows and settle them within minutes. Statuses follow the lifecycle
initialized → active → closed → determined → finalized (§4); a market can be paused (`inactive`) or closed
early through the control endpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from kbtc.sim.price import GbmSpotSource

ET = ZoneInfo("America/New_York")
SETTLEMENT_SOURCES = [{"name": "CF Benchmarks", "url": "https://www.cfbenchmarks.com/data/indices/BRTI"}]
_RULES_SECONDARY = (
    "Not all cryptocurrency price data is the same. While checking a source like Google or Coinbase may help "
    "guide your decision, the price used to determine this market is based on CF Benchmarks' corresponding "
    "Real Time Index (RTI). At the last minute before expiration, 60 RTI prices are collected. The official "
    "and final value is the average of these prices"
)


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """What a series is: its layout kind, fees and venue metadata (`GET /series/{ticker}`)."""

    ticker: str
    kind: str  # "window" (KXBTC15M), "ladder" (KXBTCD) or "range" (KXBTC)
    title: str
    frequency: str
    price_level_structure: str
    settlement_timer_s: int
    fee_type: str = "quadratic"
    fee_multiplier: float = 1.0


SERIES: dict[str, SeriesSpec] = {
    s.ticker: s
    for s in (
        SeriesSpec("KXBTC15M", "window", "BTC price up in next 15 mins?", "fifteen_min", "tapered_deci_cent", 1),
        SeriesSpec("KXBTCD", "ladder", "Bitcoin price Above/below", "hourly", "linear_cent", 60),
        SeriesSpec("KXBTC", "range", "Bitcoin price range", "hourly", "linear_cent", 60),
    )
}


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    """Time scale and layout of the listed markets."""

    window_minutes: int = 15  # KXBTC15M window length
    event_minutes: int = 60  # KXBTCD / KXBTC event length (hourly events)
    history_s: int = 6 * 3600  # markets that closed longer ago than this are no longer listed
    historical_cutoff_s: int = 2 * 3600  # settled earlier than now − this → only under /historical
    strike_delay_s: int = 5  # KXBTC15M target price published this long after the open
    determination_delay_s: int = 10  # close → determined (the 60-s average needs the close print)
    ladder_strikes: int = 20
    ladder_step_usd: float = 250.0
    range_buckets: int = 10
    range_width_usd: float = 250.0
    series: tuple[str, ...] = ("KXBTC15M", "KXBTCD", "KXBTC")
    # Closes fall at `k · period + phase_s` (0: on the clock's whole periods, as the venue). A demo sets it so
    # the next window opens just after its collectors are up instead of up to a period later.
    phase_s: int = 0


@dataclass(frozen=True, slots=True)
class Market:
    """The static definition of one market; its status and quotes are functions of time."""

    ticker: str
    event_ticker: str
    series_ticker: str
    strike_type: str
    floor_strike: float | None
    cap_strike: float | None
    created_ms: int
    open_ms: int
    close_ms: int
    strike_known_ms: int  # when floor_strike becomes public (KXBTC15M: shortly after the open)
    determination_ms: int
    settled_ms: int
    yes_sub_title: str
    price_level_structure: str
    settlement_timer_s: int
    title: str
    rules_primary: str
    rules_secondary: str

    def status(self, now_ms: int) -> str:
        """The venue status at `now_ms` (no pause or early close; see `Catalog.status`)."""
        if now_ms < self.open_ms:
            return "initialized"
        if now_ms < self.close_ms:
            return "active"
        if now_ms < self.determination_ms:
            return "closed"
        if now_ms < self.settled_ms:
            return "determined"
        return "finalized"

    def resolves_yes(self, value: float) -> bool:
        """Settlement rule of the strike type (KXBTC15M's `greater_or_equal`: ties are YES)."""
        if self.strike_type == "greater_or_equal":
            return value >= (self.floor_strike or 0.0)
        if self.strike_type == "greater":
            return value > (self.floor_strike or 0.0)
        if self.strike_type == "less":
            return value < (self.cap_strike or 0.0)
        return (self.floor_strike or 0.0) <= value <= (self.cap_strike or 0.0)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its series, its close time, its markets."""

    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    close_ms: int
    markets: tuple[Market, ...]


def iso(ts_ms: int) -> str:
    """Kalshi's timestamp format: ISO-8601 UTC with a `Z`."""
    text = datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.rstrip("0").rstrip(".") + "Z"


def _et(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, ET)


def _date_code(ts_ms: int) -> str:
    """`26AUG17`: the ET date in event tickers."""
    return _et(ts_ms).strftime("%y%b%d").upper()


def _clock_text(ts_ms: int) -> str:
    t = _et(ts_ms)
    hour = t.strftime("%I").lstrip("0")
    minute = "" if t.minute == 0 else f":{t.minute:02d}"
    return f"{hour}{minute} {t.strftime('%p')} {t.tzname()}"


def _usd(value: float) -> str:
    return f"${value:,.2f}".removesuffix(".00")


class Catalog:
    """Every series, event and market the simulator lists, derived from the price path and the clock."""

    def __init__(self, config: CatalogConfig, source: GbmSpotSource) -> None:
        self.config = config
        self.source = source
        self._events: dict[str, Event] = {}
        self._markets: dict[str, Market] = {}
        self.pauses: dict[str, list[tuple[int, int | None]]] = {}  # ticker → [(start_ms, end_ms or None)]
        self.close_overrides: dict[str, int] = {}
        # Lifecycle changes made through the control endpoint: (ts_ms, ticker, event_type, extra fields).
        self.manual_events: list[tuple[int, str, str, dict[str, object]]] = []

    def pause(self, market: Market, now_ms: int) -> None:
        """Halt trading (status `inactive`, lifecycle `deactivated`): the book freezes, no trades."""
        if self.paused_since(market, now_ms) is not None:
            return
        self.pauses.setdefault(market.ticker, []).append((now_ms, None))
        self.manual_events.append((now_ms, market.ticker, "deactivated", {"is_deactivated": True}))

    def resume(self, market: Market, now_ms: int) -> None:
        """Resume trading (status `active` again, lifecycle `activated`)."""
        intervals = self.pauses.get(market.ticker)
        if not intervals or intervals[-1][1] is not None:
            return
        intervals[-1] = (intervals[-1][0], now_ms)
        self.manual_events.append((now_ms, market.ticker, "activated", {"is_deactivated": False}))

    def close_early(self, market: Market, close_ms: int, now_ms: int) -> None:
        """Move the close earlier (`can_close_early`; lifecycle `close_date_updated`). Settlement keeps its time."""
        if not market.open_ms <= close_ms <= market.close_ms:
            raise ValueError("an early close must fall between the open and the scheduled close")
        self.close_overrides[market.ticker] = close_ms
        self.manual_events.append((now_ms, market.ticker, "close_date_updated", {"close_ts": close_ms // 1000}))

    def _period_s(self, series: SeriesSpec) -> int:
        return 60 * (self.config.window_minutes if series.kind == "window" else self.config.event_minutes)

    def events(self, now_ms: int) -> list[Event]:
        """Every listed event at `now_ms` (created, and closed less than `history_s` ago), by close time."""
        out: list[Event] = []
        for ticker in self.config.series:
            series = SERIES[ticker]
            period_ms = self._period_s(series) * 1000
            phase_ms = self.config.phase_s * 1000 % period_ms
            first_close = (now_ms - phase_ms - self.config.history_s * 1000) // period_ms + 1
            # The next window/event is created one period before it opens, i.e. two periods before it closes.
            last_close = (now_ms - phase_ms + 2 * period_ms) // period_ms
            for k in range(max(first_close, (self.source.origin_ms - phase_ms) // period_ms + 3), last_close + 1):
                event = self._event(series, k * period_ms + phase_ms)
                if event.markets[0].created_ms <= now_ms:
                    out.append(event)
        return sorted(out, key=lambda e: (e.close_ms, e.event_ticker))

    def forget_before(self, close_ms: int) -> None:
        """Drop cached events that closed before `close_ms` (they are rebuilt, identically, if asked again)."""
        for ticker in [t for t, e in self._events.items() if e.close_ms < close_ms]:
            for market in self._events.pop(ticker).markets:
                self._markets.pop(market.ticker, None)

    def markets(self, now_ms: int) -> list[Market]:
        """Every listed market at `now_ms`, sorted by (close time, ticker)."""
        return [m for e in self.events(now_ms) for m in e.markets]

    def market(self, ticker: str, now_ms: int) -> Market | None:
        """A listed market by ticker, or None (unknown or not created yet)."""
        self.events(now_ms)
        market = self._markets.get(ticker)
        return market if market is not None and market.created_ms <= now_ms else None

    def event(self, event_ticker: str, now_ms: int) -> Event | None:
        """A listed event by ticker, or None."""
        self.events(now_ms)
        event = self._events.get(event_ticker)
        return event if event is not None and event.markets[0].created_ms <= now_ms else None

    def paused_since(self, market: Market, ts_ms: int) -> int | None:
        """Start of the pause covering `ts_ms`, or None when the market was not paused then."""
        for start, end in self.pauses.get(market.ticker, ()):
            if start <= ts_ms and (end is None or ts_ms < end):
                return start
        return None

    def close_ms(self, market: Market) -> int:
        """The effective close time (an early close moves it earlier)."""
        return self.close_overrides.get(market.ticker, market.close_ms)

    def status(self, market: Market, now_ms: int) -> str:
        """Status including pauses (`inactive`) and early closes."""
        close_ms = self.close_ms(market)
        if market.open_ms <= now_ms < close_ms and self.paused_since(market, now_ms) is not None:
            return "inactive"
        if close_ms != market.close_ms and close_ms <= now_ms < market.determination_ms:
            return "closed"
        return market.status(now_ms)

    def expiration_value(self, market: Market) -> float:
        """The settlement value: the 60-print index average before close (KXBTC15M rounds to 2 decimals)."""
        value = self.source.average_60s(market.close_ms)
        return round(value, 2) if market.series_ticker == "KXBTC15M" else value

    def _event(self, series: SeriesSpec, close_ms: int) -> Event:
        event_ticker = self._event_ticker(series, close_ms)
        cached = self._events.get(event_ticker)
        if cached is not None:
            return cached
        period_ms = self._period_s(series) * 1000
        open_ms = close_ms - period_ms
        created_ms = open_ms - period_ms
        markets: tuple[Market, ...]
        if series.kind == "window":
            markets = (self._window_market(series, event_ticker, created_ms, open_ms, close_ms),)
            title, sub_title = series.title, f"{_clock_text(open_ms)} to {_clock_text(close_ms)}"
        else:
            center = self.source.index_usd(created_ms)
            markets = self._strike_markets(series, event_ticker, center, created_ms=created_ms, open_ms=open_ms,
                                           close_ms=close_ms)
            title = markets[0].title
            sub_title = f"{_et(close_ms).strftime('%b %d, %Y')} at {_clock_text(close_ms)}"
        event = Event(event_ticker, series.ticker, title, sub_title, close_ms, markets)
        self._events[event_ticker] = event
        self._markets.update((m.ticker, m) for m in markets)
        return event

    def _event_ticker(self, series: SeriesSpec, close_ms: int) -> str:
        t = _et(close_ms)
        clock = f"{t.hour:02d}{t.minute:02d}" if series.kind == "window" or t.minute else f"{t.hour:02d}"
        return f"{series.ticker}-{_date_code(close_ms)}{clock}"

    def _times(self, series: SeriesSpec, close_ms: int) -> tuple[int, int]:
        determination_ms = close_ms + self.config.determination_delay_s * 1000
        return determination_ms, determination_ms + series.settlement_timer_s * 1000

    def _window_market(
        self, series: SeriesSpec, event_ticker: str, created_ms: int, open_ms: int, close_ms: int
    ) -> Market:
        strike = round(self.source.average_60s(open_ms), 2)
        determination_ms, settled_ms = self._times(series, close_ms)
        when = _et(close_ms).strftime("%b %d, %Y")
        rules = (
            f"If the simple average of the sixty seconds of CF Benchmarks' BRTI before {_clock_text(close_ms)} "
            f"on {when} is at least the simple average of the sixty seconds of CF Benchmarks' BRTI before "
            f"{_clock_text(open_ms)} on {when}, then the market resolves to Yes."
        )
        return Market(
            ticker=f"{event_ticker}-{_et(close_ms).minute:02d}", event_ticker=event_ticker,
            series_ticker=series.ticker, strike_type="greater_or_equal", floor_strike=strike, cap_strike=None,
            created_ms=created_ms, open_ms=open_ms, close_ms=close_ms,
            strike_known_ms=open_ms + self.config.strike_delay_s * 1000,
            determination_ms=determination_ms, settled_ms=settled_ms,
            yes_sub_title=f"Target Price: {_usd(strike)}", price_level_structure=series.price_level_structure,
            settlement_timer_s=series.settlement_timer_s, title=series.title, rules_primary=rules,
            rules_secondary=_RULES_SECONDARY + ", rounded to the nearest 2 decimal places.",
        )

    def _strike_markets(
        self, series: SeriesSpec, event_ticker: str, center_usd: float, *, created_ms: int, open_ms: int,
        close_ms: int,
    ) -> tuple[Market, ...]:
        cfg = self.config
        when = f"{_et(close_ms).strftime('%b %d, %Y')} at {_clock_text(close_ms)}"
        title = f"Bitcoin price {'range ' if series.kind == 'range' else ''}on {when}?"
        determination_ms, settled_ms = self._times(series, close_ms)
        rows: list[tuple[str, str, float | None, float | None, str, str]] = []
        if series.kind == "ladder":
            base = math.floor(center_usd / cfg.ladder_step_usd) * cfg.ladder_step_usd
            for i in range(cfg.ladder_strikes):
                floor = base + (i - cfg.ladder_strikes // 2) * cfg.ladder_step_usd - 0.01
                label = f"{_usd(floor + 0.01)} or above"
                rows.append((f"T{floor:.2f}", "greater", floor, None, label, f"above {floor:.2f}"))
        else:
            width = cfg.range_width_usd
            low = (math.floor(center_usd / width) - cfg.range_buckets // 2) * width
            for i in range(cfg.range_buckets):
                floor, cap = low + i * width, low + (i + 1) * width - 0.01
                mid = floor + width / 2
                rows.append((f"B{mid:g}", "between", floor, cap, f"{_usd(floor)} to {_usd(cap)}",
                             f"between {floor:.2f}-{cap:.2f}"))
            high = low + cfg.range_buckets * width - 0.01
            rows.insert(0, (f"T{low - 0.01:.2f}", "less", None, low, f"{_usd(low - 0.01)} or below",
                            f"below {low:.2f}"))
            rows.append((f"T{high:.2f}", "greater", high, None, f"{_usd(high + 0.01)} or above",
                         f"above {high:.2f}"))
        return tuple(
            Market(
                ticker=f"{event_ticker}-{suffix}", event_ticker=event_ticker, series_ticker=series.ticker,
                strike_type=strike_type, floor_strike=floor, cap_strike=cap, created_ms=created_ms,
                open_ms=open_ms, close_ms=close_ms, strike_known_ms=created_ms,
                determination_ms=determination_ms, settled_ms=settled_ms, yes_sub_title=label,
                price_level_structure=series.price_level_structure,
                settlement_timer_s=series.settlement_timer_s, title=title,
                rules_primary=(
                    "If the simple average of the sixty seconds of CF Benchmarks' Bitcoin Real-Time Index (BRTI) "
                    f"before {_clock_text(close_ms)} is {rule} at {when}, then the market resolves to Yes."
                ),
                rules_secondary=_RULES_SECONDARY + ".",
            )
            for suffix, strike_type, floor, cap, label, rule in rows
        )
