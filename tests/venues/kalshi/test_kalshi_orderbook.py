"""Order books from REST shapes and WS snapshot + signed deltas; NO-leg and YES-price conventions; depth."""

from __future__ import annotations

import pytest
from kalshi_samples import sample

from kbtc.venues.kalshi.orderbook import OrderBook, parse_book_sides
from kbtc.venues.kalshi.parsing import FieldError


def test_current_and_legacy_rest_books_agree() -> None:
    current = OrderBook("M")
    current.apply_snapshot(sample("rest_orderbook_current_orderbook_fp.json"))
    legacy = OrderBook("M")
    legacy.apply_snapshot(sample("rest_orderbook_LEGACY_cents_pre_2026-03.json"))
    assert current.yes_bids == legacy.yes_bids and current.no_bids == legacy.no_bids
    top = current.top()
    # Bids are sorted ascending on the wire: the best is the last level.
    assert top == {"yes_bid_cents": 42.0, "yes_ask_cents": 44.0, "no_bid_cents": 56.0, "no_ask_cents": 58.0,
                   "yes_bid_size": 13.0, "yes_ask_size": 17.0}


@pytest.mark.parametrize(
    "payload",
    [
        {"orderbook_fp": {"yes_dollars": [["0.4200", "13.00"]], "no_dollars": None}},
        {"orderbook_fp": {"yes_dollars": [["0.4200", "13.00"]], "no_dollars": []}},
        {"orderbook_fp": {"yes_dollars": [["0.4200", "13.00"]]}},
        {"orderbook": {"yes": [[42, 13]], "no": None}},
        {"orderbook": {"yes_dollars": [["0.4200", 13]], "yes": [[42, 13]]}},
    ],
)
def test_empty_missing_null_sides(payload: dict[str, object]) -> None:
    yes, no = parse_book_sides(payload)
    assert yes == {4200: 13.0} and no == {}
    book = OrderBook("M")
    book.apply_snapshot(payload)
    assert book.best_yes_ask_cents() is None and book.best_no_ask_cents() == 58.0


def test_null_book_and_bad_levels() -> None:
    assert parse_book_sides({"orderbook_fp": None}) == ({}, {})
    with pytest.raises(FieldError):
        parse_book_sides({"orderbook_fp": {"yes_dollars": [["0.42"]]}})
    with pytest.raises(FieldError):
        parse_book_sides({"orderbook_fp": {"yes_dollars": "0.42"}})


def test_ws_snapshot_then_signed_deltas() -> None:
    book = OrderBook("FED-23DEC-T3.00")
    snapshot = sample("ws_orderbook_snapshot.json")
    book.apply_snapshot(snapshot["msg"], seq=snapshot["seq"])
    assert (book.best_yes_bid_cents(), book.best_yes_ask_cents(), book.seq) == (22.0, 44.0, 2)
    book.apply_delta("yes", "0.2200", "-333.00")  # removes the best YES bid entirely
    assert book.best_yes_bid_cents() == 8.0 and book.best_no_ask_cents() == 92.0
    book.apply_delta("yes", "0.9530", "5.50", seq=4)  # a sub-penny level
    assert book.best_yes_bid_cents() == 95.3 and book.best_no_ask_cents() == 4.7 and book.seq == 4
    book.apply_delta("no", "0.5600", "-100.00")
    assert book.no_bids == {5400: 20.0, 5600: 46.0}
    delta = sample("ws_orderbook_delta.json")["msg"]
    book.apply_delta(delta["side"], delta["price_dollars"], delta["delta_fp"])  # -54 at an empty level: no-op
    assert 9600 not in book.yes_bids


def test_use_yes_price_convention() -> None:
    no_leg = OrderBook("M")
    no_leg.apply_snapshot({"yes_dollars_fp": [["0.40", "1"]], "no_dollars_fp": [["0.55", "2"]]})
    yes_leg = OrderBook("M", use_yes_price=True)
    # With use_yes_price the NO bid at NO-price 0.55 is quoted at YES-price 0.45.
    yes_leg.apply_snapshot({"yes_dollars_fp": [["0.40", "1"]], "no_dollars_fp": [["0.45", "2"]]})
    assert no_leg.top() == yes_leg.top()
    no_leg.apply_delta("no", "0.57", "3")
    yes_leg.apply_delta("no", "0.43", "3")
    assert no_leg.no_bids == yes_leg.no_bids and no_leg.best_yes_ask_cents() == 43.0


def test_depth_to_size() -> None:
    book = OrderBook("M")
    book.apply_snapshot(sample("rest_orderbook_current_orderbook_fp.json"))
    fill = book.depth("yes", 30.0)  # NO bids 0.56 x17, 0.45 x20 -> YES asks 44 x17, 55 x13
    assert fill.filled == 30.0 and fill.worst_price_cents == 55.0
    assert fill.avg_price_cents == pytest.approx((44 * 17 + 55 * 13) / 30)
    too_big = book.depth("no", 10_000.0)
    assert too_big.filled == sum(book.yes_bids.values()) and too_big.worst_price_cents == 99.0
    assert OrderBook("E").depth("yes", 1.0).avg_price_cents is None


def test_snapshot_row_is_best_first() -> None:
    book = OrderBook("M")
    book.apply_snapshot(sample("ws_orderbook_snapshot.json")["msg"], seq=2)
    row = book.snapshot_row(book_ts=1, received_ts=2, source="ws")
    assert row["yes_bids_json"] == "[[22.0, 333.0], [8.0, 300.0]]" and row["best_no_bid_cents"] == 56.0
