"""The database schema: every table kbtc writes, with natural keys and the indexes the hot reads use.

Units (DESIGN.md §3):
- `*_ts` columns are UTC epoch **milliseconds** (BIGINT). Market-data rows keep the venue's timestamp and
  our `received_ts`.
- Kalshi prices are **cents** (0–100) as REAL, quantised to 0.01 ¢ (= $0.0001, the venue's resolution):
  `round(cents * 100)` recovers the venue's integer of $0.0001 units exactly. Counts (`*_size`, `volume`,
  `open_interest`) are REAL because fractional contracts exist (`*_fp` strings, 0.01 resolution).
- Spot prices, strikes, `expiration_value` are USD; EV, fees and PnL are **dollars**.
- `raw_json` keeps the venue payload a row was parsed from (text, so bulk writes stay cheap).

Every market-data and ledger table has a natural-key unique constraint (`uq_*`), which the store's
upserts target: re-running a step, replaying a tape or overlapping collector sessions never duplicate rows.
The schema changes only through Alembic migrations (`migrations/`); `alembic check` keeps them in sync.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the naming-convention MetaData (stable constraint names for Alembic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# ---------------------------------------------------------------------------------------------------------
# Kalshi catalog
# ---------------------------------------------------------------------------------------------------------


class Series(Base):
    """A Kalshi series (`GET /series/{ticker}`), with its fee parameters."""

    __tablename__ = "series"

    series_ticker: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(64))
    frequency: Mapped[str | None] = mapped_column(String(32))
    fee_type: Mapped[str | None] = mapped_column(String(48))
    fee_multiplier: Mapped[float | None] = mapped_column(Float)
    settlement_sources_json: Mapped[str | None] = mapped_column(Text)
    updated_ts: Mapped[int] = mapped_column(BigInteger)
    raw_json: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """A Kalshi event (one close time of a series), with optional fee overrides."""

    __tablename__ = "events"

    event_ticker: Mapped[str] = mapped_column(String(96), primary_key=True)
    series_ticker: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    sub_title: Mapped[str | None] = mapped_column(Text)
    strike_ts: Mapped[int | None] = mapped_column(BigInteger)
    mutually_exclusive: Mapped[bool | None] = mapped_column(Boolean)
    fee_type_override: Mapped[str | None] = mapped_column(String(48))
    fee_multiplier_override: Mapped[float | None] = mapped_column(Float)
    updated_ts: Mapped[int] = mapped_column(BigInteger)
    raw_json: Mapped[str | None] = mapped_column(Text)


class Market(Base):
    """A Kalshi market (= the seed's markets + contracts): strikes, times, status, result, fees.

    `fee_type`/`fee_multiplier` are the effective values (event override, else series).
    `catalog_status` is ours: `listed` while the venue lists it, `vanished` when a refresh no longer
    finds it (the row is demoted, never overwritten with nulls).
    """

    __tablename__ = "markets"

    market_ticker: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_ticker: Mapped[str] = mapped_column(String(96), index=True)
    series_ticker: Mapped[str] = mapped_column(String(64))
    market_type: Mapped[str | None] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(Text)
    yes_sub_title: Mapped[str | None] = mapped_column(Text)
    strike_type: Mapped[str | None] = mapped_column(String(32))
    floor_strike: Mapped[float | None] = mapped_column(Float)
    cap_strike: Mapped[float | None] = mapped_column(Float)
    custom_strike_json: Mapped[str | None] = mapped_column(Text)
    open_ts: Mapped[int | None] = mapped_column(BigInteger)
    close_ts: Mapped[int | None] = mapped_column(BigInteger)
    expected_expiration_ts: Mapped[int | None] = mapped_column(BigInteger)
    latest_expiration_ts: Mapped[int | None] = mapped_column(BigInteger)
    settlement_ts: Mapped[int | None] = mapped_column(BigInteger)
    settlement_timer_s: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(24))
    catalog_status: Mapped[str] = mapped_column(String(16), server_default=text("'listed'"))
    can_close_early: Mapped[bool | None] = mapped_column(Boolean)
    price_level_structure: Mapped[str | None] = mapped_column(String(48))
    price_ranges_json: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str | None] = mapped_column(String(16))
    expiration_value: Mapped[float | None] = mapped_column(Float)
    settlement_value_dollars: Mapped[float | None] = mapped_column(Float)
    determined_ts: Mapped[int | None] = mapped_column(BigInteger)
    settled_ts: Mapped[int | None] = mapped_column(BigInteger)
    fee_type: Mapped[str | None] = mapped_column(String(48))
    fee_multiplier: Mapped[float | None] = mapped_column(Float)
    rules_primary: Mapped[str | None] = mapped_column(Text)
    first_seen_ts: Mapped[int] = mapped_column(BigInteger)
    updated_ts: Mapped[int] = mapped_column(BigInteger)
    raw_json: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_markets_series_status_close", "series_ticker", "status", "close_ts"),
        Index("ix_markets_close_ts", "close_ts"),
    )


class MarketLifecycleEvent(Base):
    """A `market_lifecycle_v2` message (created, activated, determined, settled, ...)."""

    __tablename__ = "market_lifecycle_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(48))
    event_ts: Mapped[int] = mapped_column(BigInteger)
    received_ts: Mapped[int] = mapped_column(BigInteger)
    raw_json: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("market_ticker", "event_type", "event_ts"),)


# ---------------------------------------------------------------------------------------------------------
# Kalshi market data
# ---------------------------------------------------------------------------------------------------------


class Quote(Base):
    """Top of book for a market at a venue time, from REST polling (`rest`) or the WS ticker (`ws`)."""

    __tablename__ = "quotes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128))
    quote_ts: Mapped[int] = mapped_column(BigInteger)
    received_ts: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(8))
    yes_bid_cents: Mapped[float | None] = mapped_column(Float)
    yes_ask_cents: Mapped[float | None] = mapped_column(Float)
    no_bid_cents: Mapped[float | None] = mapped_column(Float)
    no_ask_cents: Mapped[float | None] = mapped_column(Float)
    yes_bid_size: Mapped[float | None] = mapped_column(Float)
    yes_ask_size: Mapped[float | None] = mapped_column(Float)
    last_price_cents: Mapped[float | None] = mapped_column(Float)
    volume: Mapped[float | None] = mapped_column(Float)
    volume_24h: Mapped[float | None] = mapped_column(Float)
    open_interest: Mapped[float | None] = mapped_column(Float)

    # The unique key leads with (market_ticker, quote_ts): it is also the "latest quote as of t" index.
    __table_args__ = (
        UniqueConstraint("market_ticker", "quote_ts", "source"),
        Index("ix_quotes_quote_ts", "quote_ts"),
    )


class OrderbookSnapshot(Base):
    """A full order book: YES and NO bid ladders as JSON `[[price_cents, size], ...]`, best price first."""

    __tablename__ = "orderbook_snapshots"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128))
    book_ts: Mapped[int] = mapped_column(BigInteger)
    received_ts: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(8))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    yes_bids_json: Mapped[str] = mapped_column(Text)
    no_bids_json: Mapped[str] = mapped_column(Text)
    best_yes_bid_cents: Mapped[float | None] = mapped_column(Float)
    best_no_bid_cents: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("market_ticker", "book_ts", "source"),)


class KalshiTrade(Base):
    """A public Kalshi trade (REST `/markets/trades` or the WS `trade` channel)."""

    __tablename__ = "kalshi_trades"

    trade_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128))
    trade_ts: Mapped[int] = mapped_column(BigInteger)
    received_ts: Mapped[int] = mapped_column(BigInteger)
    yes_price_cents: Mapped[float | None] = mapped_column(Float)
    no_price_cents: Mapped[float | None] = mapped_column(Float)
    count: Mapped[float | None] = mapped_column(Float)
    taker_side: Mapped[str | None] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(8))

    __table_args__ = (Index("ix_kalshi_trades_market_ticker_trade_ts", "market_ticker", "trade_ts"),)


class IndexPrice(Base):
    """A settlement-index print (e.g. BRTI via Kalshi's `cfbenchmarks_value`), with Kalshi's 60 s averages.

    `avg_60s_*`: the trailing 60 s average (`avg_60s_data`). `avg_15min_*`: `last_60s_windowed_average_15min`,
    set only in the minute before each :00/:15/:30/:45 close (window `(close − 60 s, close]`, count up to 60).
    """

    __tablename__ = "index_prices"

    index_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    value_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    received_ts: Mapped[int] = mapped_column(BigInteger)
    value_usd: Mapped[float] = mapped_column(Float)
    avg_60s_usd: Mapped[float | None] = mapped_column(Float)
    avg_60s_count: Mapped[int | None] = mapped_column(Integer)
    avg_15min_usd: Mapped[float | None] = mapped_column(Float)
    avg_15min_count: Mapped[int | None] = mapped_column(Integer)


# ---------------------------------------------------------------------------------------------------------
# Spot (Coinbase)
# ---------------------------------------------------------------------------------------------------------


class SpotTick(Base):
    """A Coinbase ticker update. `tick_ts` (ms) is for queries; `venue_time_ns` keeps full precision."""

    __tablename__ = "spot_ticks"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(24))
    tick_ts: Mapped[int] = mapped_column(BigInteger)
    venue_time_ns: Mapped[int] = mapped_column(BigInteger)
    received_ts: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[float] = mapped_column(Float)
    best_bid: Mapped[float | None] = mapped_column(Float)
    best_ask: Mapped[float | None] = mapped_column(Float)
    best_bid_size: Mapped[float | None] = mapped_column(Float)
    best_ask_size: Mapped[float | None] = mapped_column(Float)
    sequence_num: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("product_id", "source", "venue_time_ns"),
        Index("ix_spot_ticks_product_id_tick_ts", "product_id", "tick_ts"),
    )


class SpotCandle(Base):
    """An OHLCV candle from the REST backfill (Advanced Trade or Exchange)."""

    __tablename__ = "spot_candles"

    product_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    source: Mapped[str] = mapped_column(String(24), primary_key=True)
    granularity_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    start_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float | None] = mapped_column(Float)
    received_ts: Mapped[int] = mapped_column(BigInteger)


# ---------------------------------------------------------------------------------------------------------
# Model outputs and ledger
# ---------------------------------------------------------------------------------------------------------


class VolEstimate(Base):
    """An annualised volatility estimate at an as-of time, with its readiness status."""

    __tablename__ = "vol_estimates"

    product_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    asof_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    method: Mapped[str] = mapped_column(String(32), primary_key=True)
    sigma_annual: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(32))
    points: Mapped[int | None] = mapped_column(Integer)
    span_s: Mapped[float | None] = mapped_column(Float)
    params_json: Mapped[str | None] = mapped_column(Text)


class Edge(Base):
    """Every market evaluated in an edge tick, priced or skipped (with `skip_reason`)."""

    __tablename__ = "edges"

    asof_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128), primary_key=True)
    horizon_s: Mapped[float | None] = mapped_column(Float)
    spot_usd: Mapped[float | None] = mapped_column(Float)
    sigma_annual: Mapped[float | None] = mapped_column(Float)
    p_model: Mapped[float | None] = mapped_column(Float)
    yes_ask_cents: Mapped[float | None] = mapped_column(Float)
    no_ask_cents: Mapped[float | None] = mapped_column(Float)
    ev_yes_dollars: Mapped[float | None] = mapped_column(Float)
    ev_no_dollars: Mapped[float | None] = mapped_column(Float)
    skip_reason: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))

    # No index led by the market (migration 0005): rows arrive in key order, and one would dirty a page per
    # market per tick.


class ModelParams(Base):
    """One set of model parameters (edge, volatility, basis), stored once and referenced by the snapshots it priced.

    `params_id` is the first 16 hex digits (64 bits) of the SHA-256 of `params_json`, the canonical JSON
    `EdgeSettings.params_json` writes (sorted keys, no whitespace): the same settings have the same id in every
    database and process (kbtc/pipeline/model_params.py). `contracts` is the order size the snapshots' fees and
    EVs are totals for (the JSON's `contracts`, else 1), extracted once so that readers join instead of parsing
    JSON per row. `first_seen_ts`: the as-of time of the first snapshots written with it. Never deleted.
    """

    __tablename__ = "model_params"

    params_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(32))
    contracts: Mapped[float] = mapped_column(Float)
    params_json: Mapped[str] = mapped_column(Text)
    first_seen_ts: Mapped[int] = mapped_column(BigInteger)


class EdgeSnapshot(Base):
    """Everything scoring and the ledger need about one priced market at one as-of time.

    `params_id` refers to the `model_params` row of the settings that priced it. It is not a declared foreign
    key: on SQLite, removing a constrained column needs a table rebuild, and rebuilding `edge_snapshots` with
    foreign keys on cascades into `snapshot_scores` (migration 0004). The writer stores the params row in the
    transaction that writes the snapshots (kbtc.pipeline.edges.write_edges).
    """

    __tablename__ = "edge_snapshots"

    asof_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_ticker: Mapped[str] = mapped_column(String(96))
    series_ticker: Mapped[str] = mapped_column(String(64))
    strike_type: Mapped[str | None] = mapped_column(String(32))
    floor_strike: Mapped[float | None] = mapped_column(Float)
    cap_strike: Mapped[float | None] = mapped_column(Float)
    close_ts: Mapped[int | None] = mapped_column(BigInteger)
    settlement_ts: Mapped[int | None] = mapped_column(BigInteger)
    horizon_s: Mapped[float | None] = mapped_column(Float)
    spot_usd: Mapped[float | None] = mapped_column(Float)
    spot_ts: Mapped[int | None] = mapped_column(BigInteger)
    spot_age_s: Mapped[float | None] = mapped_column(Float)
    # Where the model spot came from: `index` (settlement-index prints, no basis) or `coinbase` (+ basis).
    spot_source: Mapped[str | None] = mapped_column(String(16))
    basis_usd: Mapped[float | None] = mapped_column(Float)
    basis_std_usd: Mapped[float | None] = mapped_column(Float)
    sigma_annual: Mapped[float | None] = mapped_column(Float)
    sigma_status: Mapped[str | None] = mapped_column(String(32))
    p_model: Mapped[float | None] = mapped_column(Float)
    p_model_raw: Mapped[float | None] = mapped_column(Float)
    p_market: Mapped[float | None] = mapped_column(Float)
    quote_ts: Mapped[int | None] = mapped_column(BigInteger)
    quote_age_s: Mapped[float | None] = mapped_column(Float)
    yes_bid_cents: Mapped[float | None] = mapped_column(Float)
    yes_ask_cents: Mapped[float | None] = mapped_column(Float)
    no_bid_cents: Mapped[float | None] = mapped_column(Float)
    no_ask_cents: Mapped[float | None] = mapped_column(Float)
    yes_bid_size: Mapped[float | None] = mapped_column(Float)
    yes_ask_size: Mapped[float | None] = mapped_column(Float)
    fee_type: Mapped[str | None] = mapped_column(String(48))
    fee_multiplier: Mapped[float | None] = mapped_column(Float)
    fee_yes_dollars: Mapped[float | None] = mapped_column(Float)
    fee_no_dollars: Mapped[float | None] = mapped_column(Float)
    ev_yes_dollars: Mapped[float | None] = mapped_column(Float)
    ev_no_dollars: Mapped[float | None] = mapped_column(Float)
    kelly_yes: Mapped[float | None] = mapped_column(Float)
    kelly_no: Mapped[float | None] = mapped_column(Float)
    skip_reason: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    params_id: Mapped[str | None] = mapped_column(String(16))

    # Settlement time only: an index led by the market would dirty a page per market per tick (migration 0005).
    __table_args__ = (Index("ix_edge_snapshots_settlement_ts", "settlement_ts"),)


class SnapshotScore(Base):
    """Scores of one snapshot once its market settled: the model and the market mid side by side."""

    __tablename__ = "snapshot_scores"

    asof_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    market_ticker: Mapped[str] = mapped_column(String(128), primary_key=True)
    outcome: Mapped[int | None] = mapped_column(Integer)
    settled_ts: Mapped[int | None] = mapped_column(BigInteger)
    brier_model: Mapped[float | None] = mapped_column(Float)
    brier_market: Mapped[float | None] = mapped_column(Float)
    logloss_model: Mapped[float | None] = mapped_column(Float)
    logloss_market: Mapped[float | None] = mapped_column(Float)
    pnl_yes_dollars: Mapped[float | None] = mapped_column(Float)
    pnl_no_dollars: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(128))
    scored_ts: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["asof_ts", "market_ticker"],
            ["edge_snapshots.asof_ts", "edge_snapshots.market_ticker"],
            ondelete="CASCADE",
        ),
        Index("ix_snapshot_scores_settled_ts", "settled_ts"),
    )


class Opportunity(Base):
    """One evaluation of one (snapshot, market, side): TAKE or PASS with reason codes, never rewritten."""

    __tablename__ = "opportunities"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    eval_ts: Mapped[int] = mapped_column(BigInteger)
    market_ticker: Mapped[str] = mapped_column(String(128))
    side: Mapped[str] = mapped_column(String(3))
    decision: Mapped[str] = mapped_column(String(4))
    reasons: Mapped[str | None] = mapped_column(String(256))
    eligible: Mapped[bool] = mapped_column(Boolean)
    snapshot_asof_ts: Mapped[int] = mapped_column(BigInteger)
    event_ticker: Mapped[str | None] = mapped_column(String(96))
    series_ticker: Mapped[str | None] = mapped_column(String(64))
    close_ts: Mapped[int | None] = mapped_column(BigInteger)
    tau_s: Mapped[float | None] = mapped_column(Float)
    spot_usd: Mapped[float | None] = mapped_column(Float)
    sigma_annual: Mapped[float | None] = mapped_column(Float)
    p_model: Mapped[float | None] = mapped_column(Float)
    p_market: Mapped[float | None] = mapped_column(Float)
    price_cents: Mapped[float | None] = mapped_column(Float)
    bid_cents: Mapped[float | None] = mapped_column(Float)
    spread_cents: Mapped[float | None] = mapped_column(Float)
    fee_dollars: Mapped[float | None] = mapped_column(Float)
    ev_raw_dollars: Mapped[float | None] = mapped_column(Float)
    ev_net_dollars: Mapped[float | None] = mapped_column(Float)
    cost_buffer_dollars: Mapped[float | None] = mapped_column(Float)
    kelly_fraction: Mapped[float | None] = mapped_column(Float)
    contracts: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(32))
    params_json: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("eval_ts", "market_ticker", "side"),
        Index("ix_opportunities_market_ticker_decision", "market_ticker", "decision"),
    )


class Position(Base):
    """A shadow position opened by a TAKE and held to settlement; closed by the settlement step."""

    __tablename__ = "positions"

    market_ticker: Mapped[str] = mapped_column(String(128), primary_key=True)
    side: Mapped[str] = mapped_column(String(3), primary_key=True)
    opened_ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    contracts: Mapped[float] = mapped_column(Float)
    entry_price_cents: Mapped[float] = mapped_column(Float)
    entry_fee_dollars: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(8))
    outcome: Mapped[int | None] = mapped_column(Integer)
    settled_ts: Mapped[int | None] = mapped_column(BigInteger)
    pnl_dollars: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_positions_status", "status"),)


# ---------------------------------------------------------------------------------------------------------
# Operations: feed health and rejected input
# ---------------------------------------------------------------------------------------------------------


class FeedEvent(Base):
    """A feed health event: connect, disconnect, gap, stale, resubscribe, snapshot, error."""

    __tablename__ = "feed_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    feed: Mapped[str] = mapped_column(String(24))
    connection_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    event_ts: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str] = mapped_column(String(128), server_default=text("''"))
    expected_seq: Mapped[int | None] = mapped_column(BigInteger)
    received_seq: Mapped[int | None] = mapped_column(BigInteger)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("feed", "connection_id", "kind", "event_ts", "subject"),
        Index("ix_feed_events_event_ts", "event_ts"),
    )


class Reject(Base):
    """Input that could not be parsed or failed validation, kept with the reason and the raw payload."""

    __tablename__ = "rejects"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source: Mapped[str] = mapped_column(String(48))
    reason: Mapped[str] = mapped_column(String(128))
    received_ts: Mapped[int] = mapped_column(BigInteger)
    raw_sha256: Mapped[str] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("source", "received_ts", "raw_sha256"),
        Index("ix_rejects_received_ts", "received_ts"),
    )


metadata = Base.metadata
