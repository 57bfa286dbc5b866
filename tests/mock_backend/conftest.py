from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from aigateway.mock_backend import MockBackendServer, run_mock_backend


@pytest.fixture
async def mock_server() -> AsyncIterator[MockBackendServer]:
    async with run_mock_backend("127.0.0.1", 0) as server:
        yield server


@pytest.fixture
async def http(mock_server: MockBackendServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=mock_server.url, auto_decompress=False) as session:
        yield session
