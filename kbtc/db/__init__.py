"""Storage: the schema, engine setup, migrations and bulk reads/writes returning Polars frames."""

from kbtc.db.engine import make_engine, read_connection, write_transaction
from kbtc.db.migrate import DatabaseTooNewError, check_database_revision, upgrade_database
from kbtc.db.store import count_rows, latest_quotes, natural_key, read_frame, spot_ticks_between, upsert

__all__ = [
    "DatabaseTooNewError",
    "check_database_revision",
    "count_rows",
    "latest_quotes",
    "make_engine",
    "natural_key",
    "read_connection",
    "read_frame",
    "spot_ticks_between",
    "upgrade_database",
    "upsert",
    "write_transaction",
]
