"""``x-mock-ttft-ms`` and ``x-mock-itl-ms``: which waits happen, observed without clocks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aigateway.mock_backend import (
    MockBackendServer,
    create_app,
    reply_text,
    run_mock_backend,
)

from .helpers import JSON_ROUTES, STREAMS, parse_sse, raw_post, stream, tokens

DELAYS = {"x-mock-ttft-ms": "250", "x-mock-itl-ms": "40"}


class RecordingSleep:
    """Stands in for asyncio.sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def recording_server(sleep: RecordingSleep) -> AsyncIterator[MockBackendServer]:
    async with run_mock_backend(app=create_app(sleep=sleep)) as server:
        yield server


@pytest.mark.parametrize("provider", STREAMS)
async def test_stream_waits_ttft_then_itl_between_tokens(
    recording_server: MockBackendServer, sleep: RecordingSleep, provider: str
) -> None:
    _, items = await stream(recording_server, provider, **DELAYS)
    assert len(tokens(provider, items)) == 6
    assert sleep.waits == [0.25] + [0.04] * 5


@pytest.mark.parametrize("provider", JSON_ROUTES)
async def test_json_waits_ttft_only(
    recording_server: MockBackendServer, sleep: RecordingSleep, provider: str
) -> None:
    path, body = JSON_ROUTES[provider]
    response = await raw_post(recording_server.port, path, body, DELAYS)
    assert response.status == 200
    assert sleep.waits == [0.25]


async def test_errors_wait_ttft_too(
    recording_server: MockBackendServer, sleep: RecordingSleep
) -> None:
    path, body = JSON_ROUTES["openai"]
    response = await raw_post(recording_server.port, path, body, {**DELAYS, "x-mock-status": "503"})
    assert response.status == 503
    assert sleep.waits == [0.25]


async def test_no_delay_knobs_no_waits(
    recording_server: MockBackendServer, sleep: RecordingSleep
) -> None:
    await stream(recording_server, "openai")
    assert sleep.waits == []


async def test_real_delays_still_stream_every_token(mock_server: MockBackendServer) -> None:
    path, body = STREAMS["openai"]
    knobs = {"x-mock-ttft-ms": "1", "x-mock-itl-ms": "1", "x-mock-output-tokens": "3"}
    response = await raw_post(mock_server.port, path, body, knobs)
    events = parse_sse(response.body.decode())
    assert len(response.chunks) == len(events) == 1 + 3 + 1 + 1 + 1
    text = "".join(
        e.json()["choices"][0]["delta"].get("content", "")
        for e in events[:-1]
        if e.json()["choices"]
    )
    assert text == reply_text(3)
