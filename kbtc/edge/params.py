"""The edge engine's parameters: the original system's defaults as settings (reference/seed_system.md §3.11).

One frozen value object travels with every tick and is recorded, with the volatility and basis settings, in
`model_params` (each snapshot's `params_id` refers to it), so a stored probability can always be traced to the
exact model and settings that produced it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

MODEL_VERSION = "gbm-avg60-v2"  # v2: the index as spot when fresh; the window's first second
SECONDS_PER_YEAR = 365 * 24 * 3600  # 24/7 market: 365-day year (model_math.md §2.2)

SettlementMode = Literal["average", "point"]
FeeRounding = Literal["cent", "ten_thousandth"]


@dataclass(frozen=True, slots=True)
class EdgeParams:
    """Model, fee, sizing and selection settings of the edge engine.

    Defaults follow the original system (seed_system.md §3.8–3.11) except where noted:
    - `settlement="average"` prices the 60-print settlement average; `"point"` is the original formula.
    - the upper horizon bound has no hidden 1-hour grace (the issue's window is [now − 5 s, now + 6 h]).
    - `max_spot_age_s` gates a stale spot in the engine (the original only gated it in the opportunity loop).
    - `index_spot`: where settlement-index prints at most `max_spot_age_s` old are available, they are the spot
      and the window's fixed prints (no basis); elsewhere Coinbase plus the basis (kbtc.edge.engine).
    """

    settlement: SettlementMode = "average"
    window_prints: int = 60  # prints in the settlement average (Kalshi rules: 60 one-second BRTI values)
    print_interval_s: float = 1.0
    prob_clip: float = 1e-12  # p_model = clip(p_model_raw, ε, 1 − ε), as the original

    contracts: float = 1.0
    fee_rounding: FeeRounding = "cent"
    default_fee_type: str = "quadratic"  # when the catalog has none (BTC series are quadratic, M = 1)
    default_fee_multiplier: float = 1.0
    flat_fee_per_contract_dollars: float = 0.01  # `flat` fee table is unpublished: see docs/EDGE_VALIDATION.md

    kelly_multiplier: float = 0.25
    event_exposure_cap: float = 0.10  # max total Kelly fraction over the markets of one event

    statuses: tuple[str, ...] = ("active", "open")
    series: tuple[str, ...] = ("KXBTC", "KXBTCD", "KXBTC15M")
    expired_tolerance_s: float = 5.0
    # An expired market passed to the engine is reported (`expired_contract`) this long, then dropped; the live
    # loaders and the replay never pass one closed more than `expired_tolerance_s` earlier.
    report_expired_s: float = 60.0
    max_horizon_s: float = 21_600.0
    pct_band: float = 3.0
    top_n: int = 40
    quote_max_age_s: float = 300.0
    max_spot_age_s: float = 10.0
    index_spot: bool = True
    max_spot_quote_lag_s: float = 10.0
    min_ask_cents: float = 1.0
    max_ask_cents: float = 99.0
    max_spread_cents: float | None = None
    pending_strike_series: tuple[str, ...] = ("KXBTC15M",)

    def to_json(self) -> str:
        """The parameters and the model version as one compact JSON object (stored with snapshots)."""
        payload = {"model_version": MODEL_VERSION, **asdict(self)}
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))
