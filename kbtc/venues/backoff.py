"""Capped exponential backoff with full jitter, shared by every reconnect and retry loop."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays `base * 2**attempt`, capped at `cap`, drawn uniformly from [`floor_fraction` × delay, delay].

    A floor above zero keeps a storm of reconnects from hammering the venue when jitter draws tiny delays.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    floor_fraction: float = 0.5

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2.0 ** max(0, attempt)))
        draw = rng.random() if rng is not None else random.random()
        return ceiling * (self.floor_fraction + (1.0 - self.floor_fraction) * draw)
