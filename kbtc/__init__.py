"""kbtc: Kalshi BTC threshold-contract data, model pricing, fee-aware edge ledger and scoring."""

__version__ = "0.1.0"
