"""Starting and stopping the mock backend."""

from __future__ import annotations

import asyncio

import aiohttp

from aigateway.mock_backend import reply_text, run_mock_backend, serve_mock_backend


async def test_serve_reports_the_bound_port_and_stops_on_event() -> None:
    ready: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve_mock_backend("127.0.0.1", 0, ready=lambda h, p: ready.put_nowait((h, p)), stop=stop)
    )
    host, port = await ready.get()
    assert host == "127.0.0.1"
    assert port > 0
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://{host}:{port}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        ) as response,
    ):
        assert (await response.json())["choices"][0]["message"]["content"] == reply_text(8)
    stop.set()
    await task
    assert task.done()


async def test_serve_stops_when_cancelled() -> None:
    ready: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(
        serve_mock_backend("127.0.0.1", 0, ready=lambda _h, p: ready.put_nowait(p))
    )
    port = await ready.get()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return  # the port is closed
    writer.close()
    raise AssertionError("the mock backend still accepts connections after cancellation")


async def test_wildcard_listen_address_is_reached_through_loopback() -> None:
    async with run_mock_backend("0.0.0.0", 0) as server, aiohttp.ClientSession() as http:
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with http.get(server.url + "/v1/models") as response:
            assert response.status == 200
