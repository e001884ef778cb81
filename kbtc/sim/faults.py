"""Faults on demand, shared by every simulated venue server.

A test (or `kbtc sim --fault …`, or the control endpoint) injects faults into a `FaultPlan`; each server
asks the plan, at the point where the fault applies, whether one is pending for it and consumes it. The plan
counts what was injected and what was applied, so a fault suite can print a summary and assert that every
injected fault was actually delivered.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    """Every fault class a simulated venue can produce."""

    DISCONNECT_CLEAN = "disconnect_clean"  # WebSocket close frame, then TCP close
    DISCONNECT_ABRUPT = "disconnect_abrupt"  # TCP connection dropped, no close frame
    STALL = "stall"  # socket stays open, nothing is sent for `duration_s`
    SKIP_SEQ = "skip_seq"  # a sequence number is skipped (a message is lost)
    DUPLICATE = "duplicate"  # a message is sent twice
    REORDER = "reorder"  # two consecutive messages swap places
    MALFORMED_JSON = "malformed_json"  # a frame / body that is not JSON
    UNKNOWN_FIELDS = "unknown_fields"  # extra fields the documentation does not list
    MISSING_FIELDS = "missing_fields"  # documented fields left out
    HTTP_429 = "http_429"  # rate-limit answers (Kalshi: no Retry-After header)
    HTTP_5XX = "http_5xx"  # server errors
    SLOW_RESPONSE = "slow_response"  # answers delayed by `duration_s`


class FaultTarget(StrEnum):
    """Which simulated server a fault applies to."""

    KALSHI_REST = "kalshi_rest"
    KALSHI_WS = "kalshi_ws"
    COINBASE_WS = "coinbase_ws"
    COINBASE_REST = "coinbase_rest"


# The optional parameters the servers read from `Fault.params` (docs/SIMULATOR.md, docs/SIMULATOR_COINBASE.md).
FAULT_PARAMS = frozenset({
    "status",  # http_5xx: the status code (default 503)
    "fields",  # missing_fields: names to drop; unknown_fields (Coinbase): a dict of keys to add
    "api",  # Coinbase: only "advanced_trade" or "exchange" takes the fault
    "channel",  # Coinbase WS: only frames of this channel take the fault
    "code",  # Coinbase disconnect_clean: the close code (default 1001)
    "reason",  # Coinbase disconnect_clean: the close reason
    "retry_after_s",  # Coinbase http_429: send a Retry-After header
})


@dataclass(slots=True)
class Fault:
    """One pending fault: applied `count` more times, with optional parameters."""

    kind: FaultKind
    target: FaultTarget
    count: int = 1
    duration_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


class FaultPlan:
    """Pending faults per (target, kind), consumed by the servers; counts injected and applied faults.

    Thread-safe: tests inject from their own thread or event loop while servers consume.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []
        self.injected: Counter[tuple[FaultTarget, FaultKind]] = Counter()
        self.applied: Counter[tuple[FaultTarget, FaultKind]] = Counter()

    def inject(
        self,
        target: FaultTarget | str,
        kind: FaultKind | str,
        *,
        count: int = 1,
        duration_s: float = 0.0,
        **params: Any,
    ) -> Fault:
        """Queue a fault for `target`, applied the next `count` times the server reaches that point."""
        if count < 1:
            raise ValueError("count must be at least 1")
        fault = Fault(FaultKind(kind), FaultTarget(target), count, duration_s, dict(params))
        with self._lock:
            self._pending.append(fault)
            self.injected[(fault.target, fault.kind)] += count
        return fault

    def take(self, target: FaultTarget, kind: FaultKind) -> Fault | None:
        """Consume one application of the oldest pending fault of this kind for this target, if any."""
        with self._lock:
            for fault in self._pending:
                if fault.target is target and fault.kind is kind:
                    fault.count -= 1
                    if fault.count == 0:
                        self._pending.remove(fault)
                    self.applied[(target, kind)] += 1
                    return fault
        return None

    def pending(self, target: FaultTarget | None = None) -> list[Fault]:
        """Faults not yet fully applied (for one target, or all)."""
        with self._lock:
            return [f for f in self._pending if target is None or f.target is target]

    def clear(self) -> None:
        """Drop every pending fault (counters are kept)."""
        with self._lock:
            self._pending.clear()

    def summary(self) -> dict[str, dict[str, int]]:
        """`{"target/kind": {"injected": n, "applied": m}}` for every fault ever injected."""
        with self._lock:
            return {
                f"{target}/{kind}": {"injected": n, "applied": self.applied[(target, kind)]}
                for (target, kind), n in sorted(self.injected.items())
            }
