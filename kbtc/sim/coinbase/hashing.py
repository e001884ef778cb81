"""Counter-based randomness: a uniform draw that depends only on (seed, stream, key), vectorised.

The simulated tape must give the same trade sizes, empty minutes and volumes to every client and every
request, whatever order they are asked in, so draws are a hash of their key (SplitMix64) rather than the
next value of a shared generator.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

# One stream per kind of draw, so e.g. trade sizes and trade sides are independent.
STREAM_EMPTY_MINUTE = 1
STREAM_MINUTE_VOLUME = 2
STREAM_TRADE_COUNT = 3
STREAM_TRADE_SIZE = 4
STREAM_TRADE_SIDE = 5
STREAM_BOOK = 6


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, stream: int, keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Uniform draws on [0, 1), one per key, fixed by (seed, stream, key)."""
    key_array = np.atleast_1d(np.asarray(keys, dtype=np.int64)).astype(np.uint64)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        salt = _splitmix64(np.array([(seed * 1_000_003 + stream) % (1 << 63)], dtype=np.int64).astype(np.uint64))
        mixed = _splitmix64(_splitmix64(key_array ^ salt))
    # The top 53 bits give an exactly representable double in [0, 1).
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def uniform_one(seed: int, stream: int, key: int) -> float:
    """One uniform draw on [0, 1) for a single key."""
    return float(uniform(seed, stream, [key])[0])
