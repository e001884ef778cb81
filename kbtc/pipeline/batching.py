"""An async batch writer: rows are buffered and flushed every `max_rows` rows or `max_delay_s` seconds.

Collectors receive frames one at a time but must write in batches (one short transaction per batch). The
flush runs in a worker thread so a slow commit never stalls the WebSocket reader; flushes are serialised, and
`close()` flushes what is left. A crash loses at most the rows buffered since the last flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchWriter(Generic[T]):
    """Buffer rows and hand them to `flush` in batches, by size or by age."""

    def __init__(
        self, flush: Callable[[list[T]], object], *, max_rows: int = 1000, max_delay_s: float = 0.25
    ) -> None:
        self._flush_fn = flush
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._buffer: list[T] = []
        self._first_buffered_at: float | None = None
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self.rows_flushed = 0
        self.flushes = 0

    async def add(self, row: T) -> None:
        """Buffer one row (flushing first if the batch is full)."""
        await self.add_many((row,))

    async def add_many(self, rows: Iterable[T]) -> None:
        """Buffer rows; flush when the batch reaches `max_rows`."""
        self._buffer.extend(rows)
        if self._buffer and self._first_buffered_at is None:
            self._first_buffered_at = time.monotonic()
            self._ensure_timer()
        if len(self._buffer) >= self._max_rows:
            await self.flush()

    def _ensure_timer(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._flush_when_due())

    async def _flush_when_due(self) -> None:
        while self._first_buffered_at is not None:
            due = self._first_buffered_at + self._max_delay_s - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            await self.flush()

    async def flush(self) -> int:
        """Write everything buffered now; return the number of rows written."""
        async with self._lock:
            rows, self._buffer = self._buffer, []
            self._first_buffered_at = None
            if not rows:
                return 0
            await asyncio.to_thread(self._flush_fn, rows)
            self.rows_flushed += len(rows)
            self.flushes += 1
            return len(rows)

    async def close(self) -> None:
        """Flush the remainder and stop the timer."""
        await self.flush()
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
