"""Plain records the venue clients emit besides market data: feed health events and rejected input.

The pipeline layer stores them (`feed_events`, `rejects`); clients only create them, so the clients stay free
of database code and tests can assert on them directly.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class FeedEventKind(StrEnum):
    """What happened to a feed connection."""

    CONNECT = "connect"
    DISCONNECT = "disconnect"
    GAP = "gap"
    STALE = "stale"
    RESUBSCRIBE = "resubscribe"
    SNAPSHOT = "snapshot"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class FeedEventRecord:
    """One feed health event (a row of `feed_events`)."""

    feed: str
    connection_id: str
    kind: FeedEventKind
    event_ts: int
    subject: str = ""
    expected_seq: int | None = None
    received_seq: int | None = None
    duration_ms: int | None = None
    detail: str | None = None

    def as_row(self) -> dict[str, Any]:
        """The record as a `feed_events` row."""
        row = asdict(self)
        row["kind"] = str(self.kind)
        return row


@dataclass(frozen=True, slots=True)
class RejectRecord:
    """Input that could not be parsed or validated (a row of `rejects`)."""

    source: str
    reason: str
    received_ts: int
    raw: str

    def as_row(self) -> dict[str, Any]:
        """The record as a `rejects` row (with the payload's SHA-256 for idempotent writes)."""
        return {
            "source": self.source,
            "reason": self.reason[:128],
            "received_ts": self.received_ts,
            "raw_sha256": hashlib.sha256(self.raw.encode("utf-8", "replace")).hexdigest(),
            "raw": self.raw,
        }
