"""Store the venue clients' feed events and rejects."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from kbtc.db.store import upsert
from kbtc.venues.records import FeedEventRecord, RejectRecord


def record_feed_events(engine: Engine, events: Iterable[FeedEventRecord]) -> int:
    """Write feed events (idempotent on feed, connection, kind, time, subject); return rows sent."""
    rows = [event.as_row() for event in events]
    return upsert(engine, "feed_events", rows, on_conflict="ignore") if rows else 0


def record_rejects(engine: Engine, rejects: Iterable[RejectRecord]) -> int:
    """Write rejected inputs (idempotent on source, receive time, payload hash); return rows sent."""
    rows = [reject.as_row() for reject in rejects]
    return upsert(engine, "rejects", rows, on_conflict="ignore") if rows else 0
