"""The simulated catalog: series layouts, the KXBTC15M strike rule, lifecycle and settlement by the 60-s average."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from kbtc.sim.market_maker import MakerConfig, MarketMaker, price_grid, prob_average_above
from kbtc.sim.markets import Catalog, CatalogConfig, Market
from kbtc.sim.price import GbmSpotSource, PriceConfig

START_MS = 1_790_000_000_000  # 2026-09-21T12:53:20Z


@pytest.fixture
def catalog() -> Catalog:
    source = GbmSpotSource(PriceConfig(seed=1), START_MS)
    return Catalog(CatalogConfig(window_minutes=2, event_minutes=10), source)


def by_series(catalog: Catalog, series: str, now_ms: int = START_MS) -> list[Market]:
    return [m for m in catalog.markets(now_ms) if m.series_ticker == series]


def test_window_strike_is_the_previous_window_expiration_value(catalog: Catalog) -> None:
    windows = by_series(catalog, "KXBTC15M")
    assert len(windows) > 10
    for previous, current in itertools.pairwise(windows):
        assert current.open_ms == previous.close_ms
        assert current.close_ms - current.open_ms == 120_000
        assert current.floor_strike == catalog.expiration_value(previous)
        assert current.strike_type == "greater_or_equal"
        assert current.ticker.startswith(current.event_ticker + "-")


def test_ties_resolve_yes_on_greater_or_equal(catalog: Catalog) -> None:
    window = by_series(catalog, "KXBTC15M")[-3]
    assert window.floor_strike is not None
    assert window.resolves_yes(window.floor_strike)
    assert not window.resolves_yes(window.floor_strike - 0.01)
    ladder = by_series(catalog, "KXBTCD")[0]
    assert ladder.floor_strike is not None and not ladder.resolves_yes(ladder.floor_strike)


def test_ladder_strikes_end_in_99_and_ranges_tile_with_tails(catalog: Catalog) -> None:
    ladder = [m for m in by_series(catalog, "KXBTCD") if m.status(START_MS) == "active"]
    assert len(ladder) == 20
    assert all(f"{m.floor_strike:.2f}".endswith("9.99") and m.ticker.endswith(f"-T{m.floor_strike:.2f}")
               for m in ladder)
    event = [m for m in by_series(catalog, "KXBTC") if m.status(START_MS) == "active"]
    lower, *buckets, upper = event
    assert (lower.strike_type, upper.strike_type) == ("less", "greater")
    assert all(m.strike_type == "between" for m in buckets)
    assert lower.cap_strike == buckets[0].floor_strike
    for a, b in itertools.pairwise(buckets):
        assert b.floor_strike == pytest.approx((a.cap_strike or 0) + 0.01)
    assert upper.floor_strike == buckets[-1].cap_strike
    # Exactly one market of a range event resolves YES for any value.
    for value in np.linspace((lower.cap_strike or 0) - 500, (upper.floor_strike or 0) + 500, 97):
        assert sum(m.resolves_yes(round(float(value), 2)) for m in event) == 1


def test_status_moves_through_the_lifecycle(catalog: Catalog) -> None:
    market = by_series(catalog, "KXBTC15M")[-1]
    expected = [
        (market.created_ms, "initialized"), (market.open_ms, "active"), (market.close_ms, "closed"),
        (market.determination_ms, "determined"), (market.settled_ms, "finalized"),
    ]
    for ts, status in expected[1:]:
        assert market.status(ts) == status
        assert market.status(ts - 1) != status
    assert market.status(market.created_ms) == "initialized"
    assert market.settled_ms - market.determination_ms == 1000  # KXBTC15M settlement timer


def test_pause_and_early_close(catalog: Catalog) -> None:
    market = next(m for m in by_series(catalog, "KXBTCD") if m.status(START_MS) == "active")
    catalog.pause(market, START_MS)
    assert catalog.status(market, START_MS) == "inactive"
    catalog.resume(market, START_MS + 1000)
    assert catalog.status(market, START_MS + 1000) == "active"
    catalog.close_early(market, START_MS + 2000, START_MS + 1500)
    assert catalog.status(market, START_MS + 2000) == "closed"
    assert [e[2] for e in catalog.manual_events] == ["deactivated", "activated", "close_date_updated"]
    with pytest.raises(ValueError, match="early close"):
        catalog.close_early(market, market.close_ms + 1, START_MS)


def test_listing_is_bounded_by_history_and_creation(catalog: Catalog) -> None:
    markets = catalog.markets(START_MS)
    assert all(m.created_ms <= START_MS for m in markets)
    assert all(m.close_ms > START_MS - catalog.config.history_s * 1000 for m in markets)
    assert any(m.status(START_MS) == "initialized" for m in markets)
    assert catalog.market("KXBTC15M-NOPE", START_MS) is None


def test_catalog_is_deterministic_per_seed() -> None:
    def tickers(seed: int) -> list[tuple[str, float | None]]:
        source = GbmSpotSource(PriceConfig(seed=seed), START_MS)
        return [(m.ticker, m.floor_strike) for m in Catalog(CatalogConfig(), source).markets(START_MS)]

    assert tickers(3) == tickers(3)
    assert tickers(3) != tickers(4)


def test_probability_of_the_average_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    sigma_s = 0.6 / np.sqrt(365 * 86400)
    # 300 s to close: the window (60 prints ending at close) is entirely in the future.
    steps = rng.standard_normal((40_000, 300)) * sigma_s - sigma_s**2 / 2
    paths = 100_000.0 * np.exp(np.cumsum(steps, axis=1))
    average = paths[:, -60:].mean(axis=1)
    strike = 100_185.0
    mc = (average > strike).mean()
    model = prob_average_above(np.array([100_000.0]), strike, np.array([300]), np.array([0.0]), 0.6)[0]
    assert model == pytest.approx(mc, abs=0.008)


def test_books_sit_on_the_grid_bids_below_asks_and_are_deterministic(catalog: Catalog) -> None:
    maker = MarketMaker(MakerConfig(), catalog.source, seed=1)
    twin = MarketMaker(MakerConfig(), catalog.source, seed=1)
    active = [m for m in catalog.markets(START_MS) if m.status(START_MS) == "active"]
    sub_penny = 0
    for market in active:
        grid = set(price_grid(market.price_level_structure).tolist())
        for second in range(START_MS // 1000, START_MS // 1000 + 30):
            book = maker.book(market, second)
            assert book == twin.book(market, second)
            assert set(book.yes) <= grid and set(book.no) <= grid
            if book.yes and book.no:
                assert max(book.yes) < 10_000 - max(book.no)  # best YES bid < best YES ask
            sub_penny += sum(p % 100 != 0 for p in [*book.yes, *book.no])
    assert sub_penny > 0  # tapered_deci_cent edges quote in tenths of a cent


def test_trades_are_at_the_touch(catalog: Catalog) -> None:
    maker = MarketMaker(dataclasses.replace(MakerConfig(), trade_probability=1.0), catalog.source, seed=2)
    market = next(m for m in catalog.markets(START_MS) if m.series_ticker == "KXBTC15M" and m.status(START_MS) == "active")
    tape = maker.tape(market)
    rows = np.flatnonzero(tape.trade_count_c)
    assert len(rows) > 10
    for i in rows[:20]:
        book = maker.book(market, tape.open_s + int(i))
        touch = (10_000 - max(book.no)) if tape.trade_taker_yes[i] else max(book.yes)
        assert tape.trade_price[i] == touch


def test_vectorised_normal_cdf_matches_erfc() -> None:
    import math

    from kbtc.sim.market_maker import _norm_cdf

    x = np.linspace(-8, 8, 2001)
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2)) for v in x])
    assert np.abs(_norm_cdf(x) - exact).max() < 2e-7


def test_long_runs_forget_markets_no_longer_listed(catalog: Catalog) -> None:
    from kbtc.sim.kalshi.venue import KalshiVenue

    maker = MarketMaker(MakerConfig(), catalog.source, seed=1)
    venue = KalshiVenue(catalog, maker, lambda: START_MS)
    early = catalog.markets(START_MS)
    for market in early[-40:]:
        venue.top(market, START_MS)
    later = START_MS + catalog.config.history_s * 1000 + 3600_000
    venue.prune(later)
    listed = {m.ticker for m in catalog.markets(later)}
    assert not any(m.ticker in listed for m in early[:10])
    assert set(maker._tapes) <= listed
    assert catalog.market(early[0].ticker, later) is None
    # Asked again (e.g. a clock moved back), a forgotten market comes back identical.
    assert catalog.markets(START_MS)[:5] == early[:5]
