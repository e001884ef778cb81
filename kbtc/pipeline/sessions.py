"""The stream collectors as `run_collectors` collectors: one bounded session or the daemon, same code.

`kbtc collect --coinbase --kalshi --seconds N` and the `collect-streams` flow both build their collectors here.
A session ends when its `stop` event is set (time up, SIGINT/SIGTERM, or a sibling failed); with
`--seconds 0` it runs until a signal — the daemon mode for a process manager. Overlapping sessions write the
same rows twice at most: every table's unique key absorbs the duplicates.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy import Engine

from kbtc.config import Settings
from kbtc.pipeline.collect import Collector
from kbtc.pipeline.kalshi_collector import collect_kalshi
from kbtc.pipeline.spot_collector import collect_spot


def stream_collectors(
    settings: Settings, engine: Engine, *, coinbase: bool, kalshi: bool, debug: bool = False
) -> dict[str, Collector]:
    """The chosen collectors by name (`coinbase`, `kalshi`), ready for `run_collectors`."""
    collectors: dict[str, Collector] = {}
    if kalshi:
        collectors["kalshi"] = partial(collect_kalshi, settings, engine, debug=debug)
    if coinbase:
        collectors["coinbase"] = partial(collect_spot, settings, engine, debug=debug)
    return collectors
