"""Logging: JSON lines with the documented keys; configured secrets and PEM blocks never written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbtc.log import configure_logging, get_logger, redactor

SECRET_KEY_ID = "3f2a9c1e-kbtc-test-key-id"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAuTestKeyMaterialLine0001\n-----END RSA PRIVATE KEY-----"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "logs" / "app.jsonl"
    configure_logging(path, "DEBUG", console=True, secrets=[SECRET_KEY_ID, PEM])
    yield path
    configure_logging(None, "INFO", console=False)
    redactor.clear()


def test_lines_are_json_with_documented_keys(log_file: Path) -> None:
    log = get_logger("kbtc.test")
    log.info("quotes_written", rows=12, market="KXBTC15M-X", ratio=0.5, tags=("a", "b"))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("step_failed", step="poll")
    lines = log_file.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"ts", "ts_ms", "level", "logger", "event", "fields"}
    assert first["event"] == "quotes_written"
    assert first["fields"] == {"rows": 12, "market": "KXBTC15M-X", "ratio": 0.5, "tags": ["a", "b"]}
    assert first["level"] == "INFO" and first["logger"] == "kbtc.test"
    assert first["ts"].endswith("Z")
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc"]


def test_secrets_never_reach_file_or_console(log_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger("kbtc.test")
    log.info(f"using key {SECRET_KEY_ID}", header=SECRET_KEY_ID)
    log.warning("pem_seen", pem=PEM)
    log.info("pem line", line="MIIEpAIBAAKCAQEAuTestKeyMaterialLine0001")
    log.error("unregistered pem", text="-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----")
    written = log_file.read_text() + capsys.readouterr().err
    for needle in (SECRET_KEY_ID, "MIIEpAIBAAKCAQEAuTestKeyMaterialLine0001", "QUJD", "BEGIN"):
        assert needle not in written
    assert written.count("[REDACTED]") >= 4
    for line in log_file.read_text().splitlines():
        json.loads(line)


def test_a_secret_that_json_escapes_is_redacted_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = 'pa"ss\\w0rd-secret'
    path = tmp_path / "app.jsonl"
    configure_logging(path, "INFO", console=True, secrets=[secret])
    try:
        log = get_logger("kbtc.test")
        log.info(f"login with {secret}", passphrase=secret, nested={secret: [secret]}, obj=Path(secret))
        try:
            raise ValueError(f"bad passphrase {secret}")
        except ValueError:
            log.exception("login_failed")
    finally:
        configure_logging(None, "INFO", console=False)
        redactor.clear()
    raw = path.read_text()
    records = [json.loads(line) for line in raw.splitlines()]
    assert len(records) == 2
    decoded = json.dumps(records, ensure_ascii=False)  # any escaped form, decoded, then searched as text
    for text in [*(str(r) for r in records), decoded, raw, capsys.readouterr().err]:
        assert secret not in text
        assert "w0rd-secret" not in text
    assert records[0]["event"] == "login with [REDACTED]"
    assert records[0]["fields"] == {"passphrase": "[REDACTED]", "nested": {"[REDACTED]": ["[REDACTED]"]},
                                    "obj": "[REDACTED]"}
    assert "bad passphrase [REDACTED]" in records[1]["exc"]
