"""BatchWriter flushes by size and by age, and close() flushes the rest."""

from __future__ import annotations

import asyncio

from kbtc.pipeline.batching import BatchWriter


async def test_flush_by_size_and_close() -> None:
    batches: list[list[int]] = []
    writer: BatchWriter[int] = BatchWriter(batches.append, max_rows=3, max_delay_s=60)
    for i in range(7):
        await writer.add(i)
    assert batches == [[0, 1, 2], [3, 4, 5]]
    await writer.close()
    assert batches[-1] == [6]
    assert writer.rows_flushed == 7 and writer.flushes == 3


async def test_flush_by_age() -> None:
    batches: list[list[str]] = []
    writer: BatchWriter[str] = BatchWriter(batches.append, max_rows=1000, max_delay_s=0.05)
    await writer.add_many(["a", "b"])
    assert batches == []
    for _ in range(100):
        if batches:
            break
        await asyncio.sleep(0.01)
    assert batches == [["a", "b"]]
    await writer.add("c")
    await writer.close()
    assert batches == [["a", "b"], ["c"]]
