"""Which failures are worth retrying: the one classification every retry loop and Prefect task shares.

Transient: timeouts, dropped connections, HTTP 408/425/429/5xx, a locked/busy database, and any error that
says so itself with a boolean `transient` attribute (the venue clients' errors do). Everything else — bad
input above all — is not retried.
"""

from __future__ import annotations

import sqlite3

import httpx

TRANSIENT_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: timeouts, dropped connections, 429/5xx, a locked database."""
    flagged = getattr(exc, "transient", None)
    if isinstance(flagged, bool):
        return flagged
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in TRANSIENT_HTTP_STATUS
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, sqlite3.OperationalError) or type(exc).__name__ == "OperationalError":
        return "locked" in str(exc) or "busy" in str(exc)
    return False
