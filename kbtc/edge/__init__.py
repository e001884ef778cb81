"""Edge computations: volatility, settlement-index basis, probability, fees, EV — frames in, frames out.

No I/O and no clock anywhere in this package:
- `volatility`, `basis`: σ and the Coinbase → settlement-index basis at as-of times (NumPy inside: their
  exponentially weighted recursions, `vol_recursion`, have no Polars expression).
- `probability`: P(YES) under zero-drift GBM for the 60-second settlement average (or a point).
- `fees`: exact integer Kalshi fees; `ev`: EV, break-even, Kelly, depth-aware EV.
- `selection`, `quality`: which markets are priced, and a reason code for every one that is not.
- `engine.compute_edges`: the whole tick (or replay) in one call; `batch.price_rows`: the what-if API.
- `streaming`: the streaming engine's morsel size, set on import (the kernel's passes stay in L2).
"""

from kbtc.edge.engine import EDGE_COLUMNS, compute_edges, market_state, quotes_asof
from kbtc.edge.params import MODEL_VERSION, EdgeParams
from kbtc.edge.streaming import apply_streaming_chunk_size

apply_streaming_chunk_size()

__all__ = ["EDGE_COLUMNS", "MODEL_VERSION", "EdgeParams", "compute_edges", "market_state", "quotes_asof"]
