"""``GET``/``DELETE /_mock/requests``: what reached the upstream."""

from __future__ import annotations

import json

import aiohttp
from yarl import URL

from aigateway.mock_backend import (
    MockBackendServer,
    create_app,
    request_log,
    run_mock_backend,
)


async def test_requests_are_listed_newest_last(
    http: aiohttp.ClientSession, mock_server: MockBackendServer
) -> None:
    chat = {"model": "rewritten-model", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer sk-upstream", "X-Custom": "one"}
    async with http.post("/v1/chat/completions", json=chat, headers=headers) as response:
        assert response.status == 200
    async with http.post(URL("/model/a%3Ab/converse?x=1", encoded=True), data=b"{bad") as response:
        assert response.status == 400
    async with http.post("/no/such/route", data=b"payload") as response:
        assert response.status == 404

    async with http.get("/_mock/requests") as response:
        assert response.status == 200
        recorded = await response.json()
    assert [(r["method"], r["path"]) for r in recorded] == [
        ("POST", "/v1/chat/completions"),
        ("POST", "/model/a%3Ab/converse?x=1"),
        ("POST", "/no/such/route"),
    ]
    first = recorded[0]
    assert first["headers"]["authorization"] == "Bearer sk-upstream"
    assert first["headers"]["x-custom"] == "one"
    assert first["body"] == (
        '{"model": "rewritten-model", "messages": [{"role": "user", "content": "hi"}]}'
    )
    assert recorded[1]["body"] == "{bad"
    assert [r.path for r in mock_server.requests.snapshot()] == [r["path"] for r in recorded]


async def test_delete_clears_and_introspection_is_not_recorded(
    http: aiohttp.ClientSession,
) -> None:
    async with http.post("/v1/embeddings", json={"model": "e", "input": "x"}):
        pass
    async with http.delete("/_mock/requests") as response:
        assert response.status == 204
    async with http.get("/_mock/requests") as response:
        assert await response.json() == []


async def test_repeated_headers_are_joined(http: aiohttp.ClientSession) -> None:
    headers = [("X-Repeated", "a"), ("X-Repeated", "b")]
    async with http.post("/v1/embeddings", json={"model": "e", "input": "x"}, headers=headers):
        pass
    async with http.get("/_mock/requests") as response:
        [entry] = await response.json()
    assert entry["headers"]["x-repeated"] == "a, b"


async def test_history_is_bounded() -> None:
    app = create_app(history_size=3)
    async with (
        run_mock_backend(app=app) as server,
        aiohttp.ClientSession(base_url=server.url) as http,
    ):
        for n in range(5):
            async with http.post("/v1/embeddings", json={"model": "e", "input": str(n)}):
                pass
        bodies = [entry.body for entry in request_log(app).snapshot()]
    assert [json.loads(body)["input"] for body in bodies] == ["2", "3", "4"]
