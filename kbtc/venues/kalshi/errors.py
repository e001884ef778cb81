"""Errors raised by the Kalshi clients, grouped by what the caller should do about them.

```
KalshiError
├── KalshiTransientError            retry with capped backoff + jitter (the REST client does so itself;
│                                   the WebSocket client handles drops itself: reconnect + resubscribe)
│   ├── KalshiTimeoutError          connect/read timeout or a dropped connection
│   ├── KalshiRateLimitedError      HTTP 429 (Kalshi sends no Retry-After: kalshi_api.md §6)
│   ├── KalshiServerError           HTTP 5xx
│   └── KalshiRetriesExhaustedError the REST retries ran out (`__cause__` = the last failure): the step
│                                   skips that unit of work and reports it; the next run retries
├── KalshiInputError                bad input: reject + record it (`rejects`), carry on with the batch
│   └── KalshiPayloadError          a payload that is not the documented shape (e.g. a page that is not JSON)
└── KalshiFatalError                stop and say why; retrying cannot help
    ├── KalshiAuthError             401/403, a rejected signature, a missing or unreadable private key
    ├── KalshiApiError              any other 4xx, with the venue's `code` and `message` (kalshi_api.md §2)
    └── KalshiStreamError           a WebSocket error reply that means our command is wrong (code + msg, §5)
```
"""

from __future__ import annotations


class KalshiError(Exception):
    """Base class of every Kalshi client error; `transient` tells retry policies (kbtc.transient) what to do."""

    transient = False


class KalshiTransientError(KalshiError):
    """A failure that may go away on retry."""

    transient = True


class KalshiTimeoutError(KalshiTransientError):
    """The request or connection timed out or was dropped."""


class KalshiRateLimitedError(KalshiTransientError):
    """HTTP 429: the venue's token bucket is empty."""


class KalshiServerError(KalshiTransientError):
    """HTTP 5xx."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


class KalshiInputError(KalshiError):
    """Input that cannot be used; it is rejected and recorded, never retried."""


class KalshiPayloadError(KalshiInputError):
    """A response or frame that is not the documented shape."""

    def __init__(self, reason: str, raw: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class KalshiFatalError(KalshiError):
    """A failure retrying cannot fix; the step stops and reports it."""


class KalshiApiError(KalshiFatalError):
    """A 4xx answer other than 429, carrying the venue's error `code` and `message`."""

    def __init__(self, status_code: int, code: str | None, message: str, path: str = "") -> None:
        where = f" on {path}" if path else ""
        super().__init__(f"HTTP {status_code}{where}: {code or 'error'}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.path = path


class KalshiAuthError(KalshiFatalError):
    """401/403 (a rejected signature or key) or a missing/unreadable private key."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class KalshiRetriesExhaustedError(KalshiTransientError):
    """A transient failure outlasted the retry budget."""


class KalshiStreamError(KalshiFatalError):
    """The WebSocket server answered a command with an error the client cannot recover from."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"WebSocket error {code}: {message}")
        self.code = code
        self.message = message
