"""The simulated Coinbase venue: Advanced Trade and Exchange WebSocket feeds, public candle endpoints.

Implements `reference/coinbase_api.md` (§ numbers in docstrings refer to it) and the shapes of
`reference/samples/coinbase/`; never imports `kbtc.venues`.
"""

from kbtc.sim.coinbase.sim import CoinbaseSim

__all__ = ["CoinbaseSim"]
