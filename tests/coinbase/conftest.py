"""Fixtures of the Coinbase feed tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cbserver import DocServer, Handler


@pytest.fixture
async def doc_server() -> AsyncIterator[Callable[..., Awaitable[DocServer]]]:
    """Factory: `await doc_server(handler, expected_subscribes=2)` → a running server with `.url`."""
    servers: list[Any] = []

    async def start(handler: Handler, expected_subscribes: int = 2) -> DocServer:
        doc = DocServer(handler, expected_subscribes=expected_subscribes)
        servers.append(await doc.start())
        return doc

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()
