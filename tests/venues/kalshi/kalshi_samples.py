"""The documented Kalshi sample payloads (copied from reference/samples/kalshi) as test fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Any:
    """A documented Kalshi payload from samples/."""
    return json.loads((SAMPLES / name).read_text())
