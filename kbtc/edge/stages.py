"""Expression stages: the engine's column pipelines, built once per setting and applied to any frame.

Building a pricing pipeline's few hundred Polars expressions costs milliseconds of Python, as much as running
them on a live tick's 500 rows; the expressions are immutable, so each setting's are built once and reused.
"""

from __future__ import annotations

import polars as pl

# Each stage is one `with_columns`: its expressions read the input's columns and those of the stages before it.
Stages = tuple[tuple[pl.Expr, ...], ...]


def apply_stages(frame: pl.LazyFrame, stages: Stages) -> pl.LazyFrame:
    """`frame` with each stage's expressions added in turn (one `with_columns` per stage)."""
    for stage in stages:
        frame = frame.with_columns(stage)
    return frame
