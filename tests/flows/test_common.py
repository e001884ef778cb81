"""Flow helpers: which errors retry, Kalshi credentials from Prefect Secret blocks, and run names."""

from __future__ import annotations

import re
import sqlite3

import httpx
import pytest

from flows.common import resolve_settings, run_name
from kbtc.log import redactor
from kbtc.transient import is_transient


class _VenueError(Exception):
    def __init__(self, transient: bool) -> None:
        super().__init__("venue said no")
        self.transient = transient


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "http://127.0.0.1/x")
    return httpx.HTTPStatusError("x", request=request, response=httpx.Response(code, request=request))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ReadTimeout("slow"), True),
        (httpx.ConnectError("refused"), True),
        (_status_error(429), True),
        (_status_error(503), True),
        (_status_error(400), False),
        (_status_error(401), False),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("no such table: x"), False),
        (_VenueError(transient=True), True),
        (_VenueError(transient=False), False),
        (ValueError("bad input"), False),
    ],
)
def test_is_transient(exc: BaseException, expected: bool) -> None:
    assert is_transient(exc) is expected


@pytest.mark.slow
def test_credentials_from_secret_blocks(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.blocks.system import Secret

    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSj\n-----END PRIVATE KEY-----"
    Secret(value="block-key-id-0001").save("kbtc-test-key-id", overwrite=True)
    Secret(value=pem).save("kbtc-test-pem", overwrite=True)
    monkeypatch.setenv("KALSHI_KEY_ID_BLOCK", "kbtc-test-key-id")
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_BLOCK", "kbtc-test-pem")
    try:
        settings = resolve_settings()
        assert settings.kalshi_api_key_id is not None
        assert settings.kalshi_api_key_id.get_secret_value() == "block-key-id-0001"
        assert settings.kalshi_private_key_pem is not None
        assert settings.kalshi_private_key_pem.get_secret_value() == pem
        assert settings.has_kalshi_credentials
        assert "block-key-id-0001" not in redactor("id=block-key-id-0001")

        monkeypatch.setenv("KALSHI_API_KEY_ID", "env-wins-0002")
        assert resolve_settings().kalshi_api_key_id.get_secret_value() == "env-wins-0002"  # type: ignore[union-attr]
        monkeypatch.setenv("KALSHI_KEY_ID_BLOCK", "no-such-block")
        monkeypatch.delenv("KALSHI_API_KEY_ID")
        assert resolve_settings().kalshi_api_key_id is None
    finally:
        redactor.clear()


@pytest.mark.slow
def test_run_name_fills_in_parameters_and_the_start_time(prefect_server: None) -> None:
    from prefect import flow
    from prefect.runtime import flow_run

    @flow(flow_run_name=run_name("report-{scope}-{days:g}d"))
    def named(scope: str, days: float) -> str:
        return str(flow_run.name)

    assert re.fullmatch(r"report-policy-7d-\d{8}T\d{6}Z", named("policy", 7.0))
