"""Pure edge computations: volatility, settlement-index basis, probability, fees, EV — frames in, frames out."""
