"""Store the venue clients' feed events and rejects."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from kbtc.db.store import ConflictAction, upsert
from kbtc.venues.records import FeedEventRecord, RejectRecord


def record_feed_events(
    engine: Engine, events: Iterable[FeedEventRecord], *, on_conflict: ConflictAction = "ignore"
) -> int:
    """Write feed events (idempotent on feed, connection, kind, time, subject); return rows sent.

    `on_conflict="update"` lets a later record of the same event replace the earlier one (a stale period is
    recorded when it starts and again, with its duration, when it ends).
    """
    rows = [event.as_row() for event in events]
    return upsert(engine, "feed_events", rows, on_conflict=on_conflict) if rows else 0


def record_rejects(engine: Engine, rejects: Iterable[RejectRecord]) -> int:
    """Write rejected inputs (idempotent on source, receive time, payload hash); return rows sent."""
    rows = [reject.as_row() for reject in rejects]
    return upsert(engine, "rejects", rows, on_conflict="ignore") if rows else 0
