"""The stream collectors as a bounded-session flow: collect for `seconds`, flush, exit.

A long-lived WebSocket should not be one endless flow run (reference/prefect_notes.md): the deployment
schedules a session every 5 minutes that lasts 5.5 minutes, so consecutive sessions overlap by 30 s and no
gap opens while one hands over to the next; duplicates are absorbed by the tables' unique keys. Its
`concurrency_limit` is 2 (the running session plus its overlapping successor; a third is cancelled). The
session task times out at 14 minutes and the flow at 15: sessions longer than that need
`.with_options(timeout_seconds=...)` (the demo does so). For 24/7 collection without Prefect, run the daemon:
`kbtc collect --coinbase --kalshi --seconds 0` — and pause the `collect-streams` deployment then (one writer per
feed).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.common import flow_settings
from flows.steps import collect_task


@flow(name="collect-streams", flow_run_name="collect-{seconds}s", timeout_seconds=900)
def collect_streams(seconds: float = 330.0, coinbase: bool = True, kalshi: bool = True) -> dict[str, Any]:
    """Collect the Coinbase and/or Kalshi streams for `seconds` into the database and the tape."""
    results = collect_task(flow_settings(), seconds, coinbase=coinbase, kalshi=kalshi)
    logger = get_run_logger()
    for name, result in results.items():
        logger.info("%s: %s", name, {k: v for k, v in result.items() if isinstance(v, int | float)})
    return results
