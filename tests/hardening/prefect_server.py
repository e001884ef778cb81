"""A real Prefect server in a subprocess (its own PREFECT_HOME and SQLite state), for tests whose flow runs
happen in other processes (workers, killed flow runs); and a client for it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

STARTUP_TIMEOUT_S = 90.0


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """Prefect variables for a process that talks to the server at `api_url` (no telemetry, own home)."""
    return {"PREFECT_HOME": str(home), "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """Start `prefect server start` on a free loopback port; yield its API URL; stop it on exit.

    The scheduler service is off: a registered deployment's schedule never adds runs of its own, so the flow
    runs are exactly those the test creates.
    """
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **prefect_env(home, api_url), "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL")  # the server itself serves it
    log = (home / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Prefect server did not start:\n{(home / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield api_url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@contextlib.asynccontextmanager
async def client_for(api_url: str) -> AsyncIterator[PrefectClient]:
    """A Prefect client of the server at `api_url` (this process's own Prefect settings are left alone)."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        async with get_client() as client:
            yield client
