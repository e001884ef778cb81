"""Pure scoring: per-forecast metrics as Polars expressions, calibration, clustered inference, the ledger rules.

No I/O here: frames in, frames out (DESIGN.md §2). The database steps live in kbtc/pipeline/.
"""
