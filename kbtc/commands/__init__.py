"""`kbtc` sub-commands grouped by area; each module exposes `register(app)` and is wired in `kbtc.cli`."""
