"""Request signing: RSA-PSS / SHA-256 over `timestamp_ms + METHOD + path` (kalshi_api.md §2).

- The path is the URL path from the host on, **including `/trade-api/v2`** (or `/trade-api/ws/v2` for the
  WebSocket handshake) and **excluding the query string**; the host never matters.
- PSS uses MGF1(SHA-256) and a salt as long as the digest (32 bytes): `padding.PSS.DIGEST_LENGTH`.
  Some third-party code uses `MAX_LENGTH`; Kalshi's docs say digest length.
- A fresh millisecond timestamp is taken for every request and every reconnect.
- The key comes from `KALSHI_PRIVATE_KEY_PATH` (PEM, optional passphrase) or from a PEM string handed in by
  the flow layer (a Prefect Secret block). Key material and signatures are never logged or repr'd.
"""

from __future__ import annotations

import base64
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kbtc.log import get_logger
from kbtc.venues.kalshi.errors import KalshiAuthError

if TYPE_CHECKING:
    from kbtc.config import Settings

HEADER_KEY = "KALSHI-ACCESS-KEY"
HEADER_TIMESTAMP = "KALSHI-ACCESS-TIMESTAMP"
HEADER_SIGNATURE = "KALSHI-ACCESS-SIGNATURE"

_log = get_logger(__name__)


def signing_path(url_path: str) -> str:
    """The part of a URL path that is signed: everything before `?`."""
    return url_path.split("?", 1)[0]


def load_private_key(pem: bytes, passphrase: bytes | None = None) -> rsa.RSAPrivateKey:
    """Parse an RSA private key from PEM; raise `KalshiAuthError` (without key material) when it fails."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The exception text never includes the key, but keep only its class to be safe.
        raise KalshiAuthError(f"cannot load the Kalshi private key ({type(exc).__name__})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KalshiAuthError("the Kalshi private key is not an RSA key")
    return key


def warn_if_exposed(path: Path) -> bool:
    """Log a warning when the key file is readable by group or others; return True if it is."""
    mode = path.stat().st_mode
    exposed = bool(mode & (stat.S_IRWXG | stat.S_IRWXO))
    if exposed:
        _log.warning("kalshi_key_file_permissions", path=str(path), mode=oct(stat.S_IMODE(mode)),
                     hint="chmod 600 the key file")
    return exposed


class KalshiSigner:
    """Signs requests with one API key: `headers(method, path)` returns the three `KALSHI-ACCESS-*` headers."""

    __slots__ = ("_clock_ms", "_key", "_key_id")

    def __init__(
        self, key_id: str, private_key: rsa.RSAPrivateKey, *, clock_ms: Callable[[], int] | None = None
    ) -> None:
        if not key_id:
            raise KalshiAuthError("KALSHI_API_KEY_ID is empty")
        self._key_id = key_id
        self._key = private_key
        self._clock_ms: Callable[[], int] = clock_ms or _now_ms

    @classmethod
    def from_pem(cls, key_id: str, pem: str | bytes, passphrase: str | None = None) -> KalshiSigner:
        """A signer from a PEM string (e.g. a Prefect Secret block's value)."""
        data = pem.encode("utf-8") if isinstance(pem, str) else pem
        return cls(key_id, load_private_key(data, passphrase.encode("utf-8") if passphrase else None))

    @classmethod
    def from_file(cls, key_id: str, path: Path, passphrase: str | None = None) -> KalshiSigner:
        """A signer from a PEM key file (warns when the file is group/world readable)."""
        try:
            warn_if_exposed(path)
            data = path.read_bytes()
        except OSError as exc:
            raise KalshiAuthError(f"cannot read the Kalshi private key file {path}: {exc.strerror}") from None
        return cls.from_pem(key_id, data, passphrase)

    @classmethod
    def from_settings(cls, settings: Settings) -> KalshiSigner | None:
        """The signer the settings describe (PEM string first, then the key file), or None without credentials."""
        if settings.kalshi_api_key_id is None:
            return None
        key_id = settings.kalshi_api_key_id.get_secret_value()
        passphrase = (
            settings.kalshi_private_key_passphrase.get_secret_value()
            if settings.kalshi_private_key_passphrase is not None
            else None
        )
        if settings.kalshi_private_key_pem is not None:
            return cls.from_pem(key_id, settings.kalshi_private_key_pem.get_secret_value(), passphrase)
        if settings.kalshi_private_key_path is not None:
            return cls.from_file(key_id, settings.kalshi_private_key_path, passphrase)
        raise KalshiAuthError("KALSHI_API_KEY_ID is set but neither KALSHI_PRIVATE_KEY_PATH nor a PEM is")

    def sign(self, message: bytes) -> str:
        """Base64 RSA-PSS(SHA-256, MGF1 SHA-256, salt = digest length) signature of `message`."""
        signature = self._key.sign(
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
        return base64.b64encode(signature).decode("ascii")

    def headers(self, method: str, path: str, timestamp_ms: int | None = None) -> dict[str, str]:
        """The three auth headers for `METHOD path` with a fresh timestamp (the query is never signed)."""
        ts = str(timestamp_ms if timestamp_ms is not None else self._clock_ms())
        message = f"{ts}{method.upper()}{signing_path(path)}".encode()
        return {HEADER_KEY: self._key_id, HEADER_TIMESTAMP: ts, HEADER_SIGNATURE: self.sign(message)}

    def __repr__(self) -> str:
        return "KalshiSigner(key_id=***)"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000

