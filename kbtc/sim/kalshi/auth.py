"""Kalshi request signing, verified by the simulator, and the rate-limit token bucket.

Signature (`reference/kalshi_api.md` §2): headers `KALSHI-ACCESS-KEY`, `KALSHI-ACCESS-TIMESTAMP` (epoch **ms**)
and `KALSHI-ACCESS-SIGNATURE` = base64(RSA-PSS-SHA256(timestamp + METHOD + path)), MGF1-SHA256, salt length =
digest length, path from the API root including `/trade-api/v2` and without the query string. The venue
does not document a timestamp tolerance; the simulator allows `max_skew_ms` (default 30 s, as FIX logon).

Rate limit (§6): a token bucket per key (or per client address when unsigned) refilled continuously, with
two seconds of budget as capacity; an empty bucket answers `429 {"error": "too many requests"}` and no
`Retry-After` header.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"


class AuthError(Exception):
    """The request's signature headers are missing, malformed, stale or do not verify."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A registered API key: its id, RSA public key, and whether it may read `cfbenchmarks_value`."""

    key_id: str
    public_key: rsa.RSAPublicKey
    entitled: bool = False

    @classmethod
    def from_pem(cls, key_id: str, pem: bytes | str, *, entitled: bool = False) -> ApiKey:
        """Load a public key (or derive it from a private key) from PEM."""
        data = pem.encode() if isinstance(pem, str) else pem
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if not isinstance(private, rsa.RSAPrivateKey):
                raise ValueError("Kalshi keys are RSA keys")
            return cls(key_id, private.public_key(), entitled)
        public = serialization.load_pem_public_key(data)
        if not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("Kalshi keys are RSA keys")
        return cls(key_id, public, entitled)


def sign(private_key: rsa.RSAPrivateKey, timestamp_ms: int, method: str, path: str) -> str:
    """The documented signature, for tests and for the simulator's own example client code."""
    message = f"{timestamp_ms}{method.upper()}{path.split('?', maxsplit=1)[0]}".encode()
    signature = private_key.sign(
        message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return base64.b64encode(signature).decode()


def verify(headers: Mapping[str, str], method: str, path: str, keys: Mapping[str, ApiKey], *, now_ms: int,
           max_skew_ms: int = 30_000) -> ApiKey:
    """Return the key that signed this request, or raise `AuthError` saying why not."""
    key_id, timestamp, signature = (headers.get(h) for h in (KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not key_id or not timestamp or not signature:
        raise AuthError("missing authentication headers")
    key = keys.get(key_id)
    if key is None:
        raise AuthError("unknown API key")
    if not timestamp.isdigit():
        raise AuthError("timestamp must be epoch milliseconds")
    if abs(now_ms - int(timestamp)) > max_skew_ms:
        raise AuthError("timestamp outside the allowed window")
    try:
        raw = base64.b64decode(signature, validate=True)
        key.public_key.verify(
            raw, f"{timestamp}{method.upper()}{path}".encode(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise AuthError("invalid signature") from None
    return key


@dataclass(slots=True)
class TokenBucket:
    """Requests per second with a burst capacity; thread-safe."""

    rate_per_s: float
    capacity: float
    _tokens: dict[str, float] = field(default_factory=dict)
    _stamp: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, client: str, now_s: float | None = None) -> bool:
        """Spend one token of `client`'s bucket; False when empty."""
        now = time.monotonic() if now_s is None else now_s
        with self._lock:
            last = self._stamp.get(client, now)
            tokens = min(self.capacity, self._tokens.get(client, self.capacity) + (now - last) * self.rate_per_s)
            self._stamp[client] = now
            if tokens < 1.0:
                self._tokens[client] = tokens
                return False
            self._tokens[client] = tokens - 1.0
            return True
