"""Request signing: message layout, PSS parameters, key sources, permissions warning, no key material in logs."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr

from kbtc.config import load_settings
from kbtc.venues.kalshi.auth import HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, KalshiSigner
from kbtc.venues.kalshi.errors import KalshiAuthError


def _verify(key: rsa.RSAPrivateKey, message: bytes, signature_b64: str, salt: int) -> None:
    key.public_key().verify(
        base64.b64decode(signature_b64),
        message,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt),
        hashes.SHA256(),
    )


def test_signs_timestamp_method_and_path_without_query(rsa_key: rsa.RSAPrivateKey, rsa_pem: bytes) -> None:
    signer = KalshiSigner.from_pem("key-id", rsa_pem)
    headers = signer.headers("get", "/trade-api/v2/portfolio/orders?limit=5", timestamp_ms=1703123456789)
    assert headers[HEADER_KEY] == "key-id"
    assert headers[HEADER_TIMESTAMP] == "1703123456789"
    _verify(rsa_key, b"1703123456789GET/trade-api/v2/portfolio/orders", headers[HEADER_SIGNATURE], salt=32)
    with pytest.raises(InvalidSignature):  # the query string is not part of the message
        _verify(rsa_key, b"1703123456789GET/trade-api/v2/portfolio/orders?limit=5", headers[HEADER_SIGNATURE], 32)


def test_salt_is_the_digest_length(rsa_key: rsa.RSAPrivateKey, rsa_pem: bytes) -> None:
    signature = KalshiSigner.from_pem("k", rsa_pem).sign(b"x")
    for other in (20, 64, 222):  # 222 = MAX_LENGTH for a 2048-bit key, which some 3rd-party code uses
        with pytest.raises(InvalidSignature):
            _verify(rsa_key, b"x", signature, salt=other)
    _verify(rsa_key, b"x", signature, salt=32)


def test_fresh_timestamp_per_request(rsa_pem: bytes) -> None:
    ticks = iter([1000, 2000])
    signer = KalshiSigner(
        "k", serialization.load_pem_private_key(rsa_pem, None), clock_ms=lambda: next(ticks)  # type: ignore[arg-type]
    )
    assert signer.headers("GET", "/trade-api/ws/v2")[HEADER_TIMESTAMP] == "1000"
    assert signer.headers("GET", "/trade-api/ws/v2")[HEADER_TIMESTAMP] == "2000"


def test_encrypted_key_file_and_permission_warning(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-pass"),
    )
    path = tmp_path / "kalshi.key"
    path.write_bytes(pem)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        signer = KalshiSigner.from_file("k", path, "secret-pass")
    assert any("kalshi_key_file_permissions" in r.getMessage() for r in caplog.records)
    _verify(rsa_key, b"1GET/p", signer.headers("GET", "/p", timestamp_ms=1)[HEADER_SIGNATURE], 32)
    caplog.clear()
    os.chmod(path, 0o600)
    with caplog.at_level(logging.WARNING):
        KalshiSigner.from_file("k", path, "secret-pass")
    assert not caplog.records
    with pytest.raises(KalshiAuthError, match="cannot load"):
        KalshiSigner.from_file("k", path, "wrong")


def test_settings_sources_and_errors(tmp_path: Path, rsa_pem: bytes) -> None:
    assert KalshiSigner.from_settings(load_settings()) is None
    settings = load_settings(kalshi_api_key_id=SecretStr("k"), kalshi_private_key_pem=SecretStr(rsa_pem.decode()))
    signer = KalshiSigner.from_settings(settings)
    assert signer is not None and "k" not in repr(signer).replace("key_id", "")
    with pytest.raises(KalshiAuthError, match="neither"):
        KalshiSigner.from_settings(load_settings(kalshi_api_key_id=SecretStr("k")))
    with pytest.raises(KalshiAuthError, match="cannot read"):
        KalshiSigner.from_file("k", tmp_path / "missing.key")
    with pytest.raises(KalshiAuthError, match="cannot load") as info:
        KalshiSigner.from_pem("k", "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n")
    assert "not-a-key" not in str(info.value)
