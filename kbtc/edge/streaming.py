"""The streaming engine's morsel size for the edge computations, set once when `kbtc.edge` is imported.

Polars' streaming engine (what `LazyFrame.collect()` runs) cuts a frame into morsels of ~100 000 rows and runs
each expression over a whole morsel. The pricing kernel is some hundred elementwise passes over a dozen live
columns: at 100 000 rows (800 kB a column) every pass streams its inputs from the last-level cache; at 32 768
they stay in each core's 2 MB L2 while the per-morsel overhead is still small. Measured on 10M rows of the
benchmark (2 cores, medians of 5, docs/EDGE_VALIDATION.md §8): 24 576 rows 20.6M, 32 768 21.3M, 40 960 21.4M,
49 152 21.3M, Polars' 100 000 20.2M rows/s; a 3M-update replay is unchanged.
`pl.Config.set_streaming_chunk_size` is process-wide (an environment variable Polars re-reads), so it is
applied once at import, before any thread runs a query, and never when `POLARS_IDEAL_MORSEL_SIZE` is already
set: an operator's own choice wins.
"""

from __future__ import annotations

import os

import polars as pl

STREAMING_CHUNK_ROWS = 32_768
_POLARS_MORSEL_VARIABLE = "POLARS_IDEAL_MORSEL_SIZE"


def apply_streaming_chunk_size(rows: int = STREAMING_CHUNK_ROWS) -> None:
    """Set the streaming engine's morsel size to `rows`, unless `POLARS_IDEAL_MORSEL_SIZE` is set already."""
    if _POLARS_MORSEL_VARIABLE not in os.environ:
        pl.Config.set_streaming_chunk_size(rows)
