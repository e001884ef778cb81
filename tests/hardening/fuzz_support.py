"""Hypothesis strategies for parser fuzzing: arbitrary JSON, and documented payloads with mutated fields.

Random dictionaries almost never contain the keys a parser reads, so most strategies start from a documented
sample and mutate it: a field is kept, dropped, or replaced by an arbitrary JSON value (with the values that
break number parsing over-represented: huge exponents, NaN/inf spellings, negative zero, far-away dates).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

KALSHI_SAMPLES = Path(__file__).parents[1] / "venues" / "kalshi" / "samples"
COINBASE_SAMPLES = Path(__file__).parents[1] / "coinbase" / "payloads"

# Strings that parse as numbers or times in surprising ways.
TRICKY_STRINGS = st.sampled_from([
    "", " ", "0", "-0", "1", "-1", "0.5", "1.00001", "0.00001", "100", "1e400", "-1e400", "1e-400", "nan", "NaN",
    "inf", "-inf", "Infinity", "1_000", "0x10", "9" * 40, "2026-13-45T00:00:00Z", "2026-11-25T17:00:00Z",
    "2026-11-25T17:00:00.123456789Z", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z", "2026-11-25",
    "T", "null", "true", "[]", "{}", "\x00", "é", "💥",
])
TRICKY_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30, -(10**30), 1e308, -1e308, 1e-308, 0.5, -0.0,
                                  1_790_000_000, 1_790_000_000_000, 10**20])

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | TRICKY_STRINGS | TRICKY_NUMBERS
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)


def load(directory: Path, name: str) -> Any:
    """A documented sample payload."""
    return json.loads((directory / name).read_text())


@st.composite
def mutated(draw: st.DrawFn, sample: Any, depth: int = 0) -> Any:
    """`sample` with each field kept, dropped, replaced by arbitrary JSON, or (for containers) mutated inside."""
    if isinstance(sample, dict):
        out: dict[str, Any] = {}
        for key, value in sample.items():
            action = draw(st.sampled_from(["keep", "keep", "mutate", "drop", "replace"]))
            if action == "keep":
                out[key] = copy.deepcopy(value)
            elif action == "mutate" and depth < 4:
                out[key] = draw(mutated(value, depth + 1))
            elif action == "replace":
                out[key] = draw(json_values)
        out.update(draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)))
        return out
    if isinstance(sample, list):
        items = [draw(mutated(item, depth + 1)) if depth < 4 else item for item in sample]
        if items and draw(st.booleans()):
            items.pop(draw(st.integers(0, len(items) - 1)))
        return items + draw(st.lists(json_values, max_size=1))
    return draw(st.one_of(st.just(sample), json_values))


def as_wire(value: Any) -> str:
    """JSON text as a venue would send it (NaN/Infinity spelled out when the value holds them)."""
    return json.dumps(value, allow_nan=True)


# Arbitrary frame text: garbage, arbitrary JSON, truncated JSON.
garbage_text = st.one_of(
    st.text(max_size=40),
    json_values.map(as_wire),
    json_values.map(as_wire).map(lambda s: s[: len(s) // 2]),
)
