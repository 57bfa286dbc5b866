"""Models with several backends, end to end through the real Envoy (docs/architecture.md,
"Routing over several backends"): fallback across schemas, retries on each failure a real
provider shows, weights, rest for a backend out of quota, one error when all fail.

The failing backend is a small server of this module that misbehaves as the request's
``x-flaky`` header says (every backend forwards it; the mock ignores it); the healthy
ones are the mock backend. Each test checks what the official SDK saw and the exact
growth of ``aigateway_requests_total`` and ``aigateway_backend_attempts_total``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from tests.e2e.stack import (
    BEDROCK_MODEL_ID,
    UPSTREAM_KEY,
    Stack,
    default_config,
    free_port,
    running,
    wait_until,
)
from tests.e2e.test_metrics import Key, delta, snapshot

MESSAGES = [{"role": "user", "content": "one two three"}]
ATTEMPTS = "aigateway_backend_attempts_total"
REQUESTS = "aigateway_requests_total"


class Flaky:
    """An OpenAI-schema upstream that fails as each request's ``x-flaky`` asks:
    ``503``; ``429:SECONDS`` (with retry-after); ``quota`` (a 200 that says no requests
    are left for 30s); ``hang`` (never answers); ``reset`` (closes the connection);
    ``chunks`` (starts a stream, closes the connection once told to: :meth:`cut`);
    anything else answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._cut = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Flaky:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the flaky upstream did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def cut(self) -> None:
        """Reset the connection of the ``chunks`` stream in progress."""
        self._loop.call_soon_threadsafe(self._cut.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._cut = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append((request.path, dict(request.headers), body))
        mode = request.headers.get("x-flaky", "")
        if mode == "503":
            return web.json_response(
                {"error": {"message": "overloaded", "type": "server_error"}}, status=503
            )
        if mode.startswith("429:"):
            return web.json_response(
                {"error": {"message": "slow down", "type": "rate_limit_error"}},
                status=429,
                headers={"retry-after": mode[4:]},
            )
        if mode == "hang":
            assert self._stop is not None
            await self._stop.wait()
        if mode == "reset" and request.transport is not None:
            request.transport.abort()
            return web.Response()
        stream = json.loads(body).get("stream", False)
        if mode == "chunks" or stream:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for word in ("flaky", "says"):
                chunk = _chunk({"content": word + " "})
                await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if mode == "chunks" and request.transport is not None:
                await self._cut.wait()  # until the client has the chunks
                self._cut.clear()
                request.transport.abort()
                return response
            await response.write(b"data: " + json.dumps(_chunk({}, "stop")).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        headers = {}
        if mode == "quota":
            headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "30s"}
        return web.json_response(
            {
                "id": "chatcmpl-flaky",
                "object": "chat.completion",
                "created": 1,
                "model": "flaky-model",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "flaky says hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
            },
            headers=headers,
        )


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-flaky",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "flaky-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


FLAKY_KEY = "sk-flaky-backend-key"

# The fallbacks of the matrix test, with the model each is sent.
_MATRIX_BACKENDS = {
    "mock-anthropic": "claude-3-5-sonnet",
    "mock-bedrock": BEDROCK_MODEL_ID,
    "mock-gemini": "gemini-2.0-flash",
}


def routing_config(mock_port: int, flaky_port: int, closed_port: int) -> dict[str, Any]:
    mock = f"http://127.0.0.1:{mock_port}"
    key = {"api_key": {"env": "E2E_UPSTREAM_KEY"}}
    fallback = {"backend": "mock-anthropic", "backend_model": "claude-3-5-sonnet", "priority": 1}
    every = ["connect-failure", "reset", "5xx", "429"]
    config: dict[str, Any] = {
        "backends": [
            *(b for b in default_config(mock_port)["backends"] if b["name"] in _MATRIX_BACKENDS),
            {
                "name": "flaky",
                "schema": "openai",
                "endpoint": f"http://127.0.0.1:{flaky_port}",
                "auth": {"api_key": {"value": FLAKY_KEY}},
            },
            {"name": "closed", "schema": "openai", "endpoint": f"http://127.0.0.1:{closed_port}"},
            # The flaky server again: backends that will rest, apart from `flaky`.
            *(
                {"name": name, "schema": "openai", "endpoint": f"http://127.0.0.1:{flaky_port}"}
                for name in ("flaky-429", "flaky-quota")
            ),
            {"name": "mock-openai", "schema": "openai", "endpoint": mock, "auth": key},
            {"name": "mock-openai-b", "schema": "openai", "endpoint": mock, "auth": key},
        ],
        "models": [
            *(
                {
                    "name": f"to-{name}",
                    "backends": [
                        {"backend": "flaky", "backend_model": "gpt-4o"},
                        {"backend": name, "backend_model": model, "priority": 1},
                    ],
                }
                for name, model in _MATRIX_BACKENDS.items()
            ),
            {
                "name": "fallback",
                "backends": [{"backend": "flaky", "backend_model": "gpt-4o"}, fallback],
                "retry": {"attempts": 2, "per_try_timeout_seconds": 2, "on": every},
            },
            {
                "name": "refused",
                "backends": [{"backend": "closed"}, fallback],
                "retry": {"attempts": 2, "on": every},
            },
            {
                "name": "weighted",
                "backends": [
                    {"backend": "mock-openai", "weight": 3},
                    {"backend": "mock-openai-b", "weight": 1},
                ],
            },
            {
                "name": "nowhere",
                "backends": [{"backend": "flaky"}, {"backend": "closed", "priority": 1}],
                "retry": {"attempts": 2, "on": every},
            },
            {"name": "direct", "backend": "mock-openai"},
            *(
                {"name": name, "backends": [{"backend": f"flaky-{name}"}, fallback]}
                for name in ("429", "quota")
            ),
            {
                "name": "embed",
                "backends": [
                    {"backend": "flaky", "backend_model": "text-embedding-3-small"},
                    {
                        "backend": "mock-gemini",
                        "backend_model": "text-embedding-004",
                        "priority": 1,
                    },
                ],
            },
        ],
    }
    for backend in config["backends"]:
        backend["forward_headers"] = ["x-flaky", "x-mock-*"]  # the flaky server's knob too
    return config


@pytest.fixture(scope="module")
def flaky() -> Iterator[Flaky]:
    server = Flaky().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, flaky: Flaky) -> Iterator[Stack]:
    closed = free_port()  # nothing listens there: every connection is refused
    stack = Stack(
        tmp_path_factory.mktemp("routing"),
        config_factory=lambda mock_port: routing_config(mock_port, flaky.port, closed),
    )
    with running(stack) as s:
        yield s


@pytest.fixture
def oai(routed: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="client-key", max_retries=0)


@pytest.fixture
def claude(routed: Stack) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=routed.base_url, api_key="client-key", max_retries=0)


class Growth:
    """The metrics before a test's requests, and their exact growth after."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.before: dict[Key, float] = snapshot(stack.metrics_text())

    def wait(
        self, requests: dict[tuple[str, ...], float], attempts: dict[tuple[str, ...], float]
    ) -> None:
        """Until both families grew by exactly this much for the models named (Envoy logs
        attempts a moment after the response); fails with what they grew by instead."""
        seen: dict[str, Any] = {}
        # Only the models the test used: an earlier test's last attempt may be logged late.
        models = {key[1] for key in (*requests, *attempts)}

        def grown() -> bool:
            after = snapshot(self.stack.metrics_text())
            for name, family in (("requests", REQUESTS), ("attempts", ATTEMPTS)):
                grew = delta(self.before, after, family)
                seen[name] = {k: v for k, v in grew.items() if k[1] in models}
            return seen["requests"] == requests and seen["attempts"] == attempts

        try:
            wait_until("the metrics to grow", grown, timeout=10)
        except TimeoutError:
            print(self.stack.logs())
            assert seen == {"requests": requests, "attempts": attempts}
            raise


def test_a_503_falls_back_to_anthropic_and_is_counted_once(
    routed: Stack, oai: openai.OpenAI, flaky: Flaky
) -> None:
    growth = Growth(routed)
    before = len(flaky.requests)
    reply = oai.chat.completions.create(
        model="fallback", messages=MESSAGES, extra_headers={"x-flaky": "503"}
    )
    assert reply.choices[0].message.content  # the mock's Anthropic answer, as chat
    assert reply.object == "chat.completion"
    # The failed attempt went to the flaky backend as OpenAI, with its key, not the client's.
    path, headers, body = flaky.requests[before]
    assert path == "/v1/chat/completions" and json.loads(body)["model"] == "gpt-4o"
    assert headers["Authorization"] == f"Bearer {FLAKY_KEY}"
    growth.wait(
        {("mock-anthropic", "fallback", "success"): 1},
        {
            ("flaky", "fallback", "server_error"): 1,
            ("mock-anthropic", "fallback", "success"): 1,
        },
    )


def test_the_client_never_sees_the_routing_headers(routed: Stack, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="fallback", messages=MESSAGES, extra_headers={"x-flaky": "503"}
    )
    assert not [h for h in raw.headers if h.lower().startswith("x-ai-gateway")]


def test_connection_refused_falls_back(routed: Stack, oai: openai.OpenAI) -> None:
    growth = Growth(routed)
    reply = oai.chat.completions.create(model="refused", messages=MESSAGES)
    assert reply.choices[0].message.content
    growth.wait(
        {("mock-anthropic", "refused", "success"): 1},
        {
            ("closed", "refused", "connect_failure"): 1,
            ("mock-anthropic", "refused", "success"): 1,
        },
    )


def test_a_429_with_retry_after_falls_back_and_the_backend_rests(
    routed: Stack, oai: openai.OpenAI
) -> None:
    growth = Growth(routed)
    reply = oai.chat.completions.create(
        model="429", messages=MESSAGES, extra_headers={"x-flaky": "429:60"}
    )
    assert reply.choices[0].message.content
    # For the next minute the backend is left out, while the fallback can serve.
    for _ in range(3):
        oai.chat.completions.create(model="429", messages=MESSAGES)
    growth.wait(
        {("mock-anthropic", "429", "success"): 4},
        {("flaky-429", "429", "rate_limited"): 1, ("mock-anthropic", "429", "success"): 4},
    )


def test_a_backend_that_says_it_has_no_requests_left_rests_until_its_reset(
    routed: Stack, oai: openai.OpenAI
) -> None:
    growth = Growth(routed)
    reply = oai.chat.completions.create(
        model="quota", messages=MESSAGES, extra_headers={"x-flaky": "quota"}
    )
    assert reply.choices[0].message.content == "flaky says hi"  # served, but its last
    for _ in range(3):
        reply = oai.chat.completions.create(model="quota", messages=MESSAGES)
        assert reply.choices[0].message.content != "flaky says hi"
    growth.wait(
        {("flaky-quota", "quota", "success"): 1, ("mock-anthropic", "quota", "success"): 3},
        {("flaky-quota", "quota", "success"): 1, ("mock-anthropic", "quota", "success"): 3},
    )


def test_a_slow_first_byte_times_out_and_falls_back(routed: Stack, oai: openai.OpenAI) -> None:
    growth = Growth(routed)
    reply = oai.chat.completions.create(
        model="fallback", messages=MESSAGES, extra_headers={"x-flaky": "hang"}
    )
    assert reply.choices[0].message.content
    growth.wait(
        {("mock-anthropic", "fallback", "success"): 1},
        {("flaky", "fallback", "timeout"): 1, ("mock-anthropic", "fallback", "success"): 1},
    )


def test_a_reset_before_the_answer_falls_back(routed: Stack, oai: openai.OpenAI) -> None:
    growth = Growth(routed)
    reply = oai.chat.completions.create(
        model="fallback", messages=MESSAGES, extra_headers={"x-flaky": "reset"}
    )
    assert reply.choices[0].message.content
    growth.wait(
        {("mock-anthropic", "fallback", "success"): 1},
        {("flaky", "fallback", "reset"): 1, ("mock-anthropic", "fallback", "success"): 1},
    )


def test_a_reset_after_the_first_chunks_is_not_retried(routed: Stack, flaky: Flaky) -> None:
    growth = Growth(routed)
    before = len(flaky.requests)
    lines: list[str] = []
    broken = False
    body = {"model": "fallback", "messages": MESSAGES, "stream": True}
    with httpx.Client(timeout=30) as http:
        try:
            with http.stream(
                "POST",
                f"{routed.base_url}/v1/chat/completions",
                json=body,
                headers={"x-flaky": "chunks"},
            ) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line:
                        lines.append(line)
                    if line.startswith("data: {") and "says" in line:
                        flaky.cut()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            broken = True
    words = [
        json.loads(line[6:])["choices"][0]["delta"].get("content")
        for line in lines
        if line.startswith("data: {") and '"choices"' in line
    ]
    assert words[:2] == ["flaky ", "says "]
    assert broken or "error" in lines[-1]  # never the fallback's answer
    assert len(flaky.requests) == before + 1
    growth.wait({("flaky", "fallback", "error"): 1}, {("flaky", "fallback", "reset"): 1})


def test_everything_failing_is_one_error_in_the_client_api_shape(
    routed: Stack, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    growth = Growth(routed)
    failing = {"x-flaky": "503"}
    with pytest.raises(openai.APIStatusError) as chat:
        oai.chat.completions.create(model="nowhere", messages=MESSAGES, extra_headers=failing)
    with pytest.raises(openai.APIStatusError) as responses:
        oai.responses.create(model="nowhere", input="one two three", extra_headers=failing)
    with pytest.raises(anthropic.APIStatusError) as messages:
        claude.messages.create(
            model="nowhere", max_tokens=16, messages=MESSAGES, extra_headers=failing
        )
    for caught in (chat, responses):
        assert caught.value.status_code == 503
        assert isinstance(caught.value.body, dict) and "message" in caught.value.body
    assert messages.value.status_code == 503
    body = messages.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["message"]
    # The last attempt was the refused connection: Envoy's own 503, counted once each.
    growth.wait(
        {("closed", "nowhere", "error"): 3},
        {("flaky", "nowhere", "server_error"): 3, ("closed", "nowhere", "connect_failure"): 3},
    )


def test_weights_split_requests_three_to_one(routed: Stack, oai: openai.OpenAI) -> None:
    growth = Growth(routed)
    for _ in range(400):
        oai.chat.completions.create(model="weighted", messages=MESSAGES)
    growth.wait(
        {
            ("mock-openai", "weighted", "success"): 300,
            ("mock-openai-b", "weighted", "success"): 100,
        },
        {
            ("mock-openai", "weighted", "success"): 300,
            ("mock-openai-b", "weighted", "success"): 100,
        },
    )


def _answer(api: str, routed: Stack, stream: bool, model: str) -> str:
    """One request in ``api`` with the flaky backend failing; the answer's text."""
    failing = {"x-flaky": "503"}
    oai = openai.OpenAI(base_url=f"{routed.base_url}/v1", api_key="client-key", max_retries=0)
    claude = anthropic.Anthropic(base_url=routed.base_url, api_key="client-key", max_retries=0)
    if api == "chat":
        if not stream:
            reply = oai.chat.completions.create(
                model=model, messages=MESSAGES, extra_headers=failing
            )
            return reply.choices[0].message.content or ""
        chunks = oai.chat.completions.create(
            model=model, messages=MESSAGES, stream=True, extra_headers=failing
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    if api == "responses":
        if not stream:
            return oai.responses.create(
                model=model, input="one two three", extra_headers=failing
            ).output_text
        with oai.responses.stream(
            model=model, input="one two three", extra_headers=failing
        ) as events:
            return events.get_final_response().output_text
    if not stream:
        message = claude.messages.create(
            model=model, max_tokens=16, messages=MESSAGES, extra_headers=failing
        )
        return "".join(b.text for b in message.content if b.type == "text")
    with claude.messages.stream(
        model=model, max_tokens=16, messages=MESSAGES, extra_headers=failing
    ) as events:
        return "".join(events.text_stream)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api", ["chat", "responses", "messages"])
@pytest.mark.parametrize("backend", sorted(_MATRIX_BACKENDS))
def test_fallback_from_openai_to_every_schema_in_every_client_api(
    routed: Stack, backend: str, api: str, stream: bool
) -> None:
    model = f"to-{backend}"
    growth = Growth(routed)
    text = _answer(api, routed, stream, model)
    assert len(text.split()) == 8  # the mock's eight words, in the client's API
    growth.wait(
        {(backend, model, "success"): 1},
        {("flaky", model, "server_error"): 1, (backend, model, "success"): 1},
    )


def test_embeddings_fall_back_to_a_backend_that_has_them(routed: Stack, oai: openai.OpenAI) -> None:
    growth = Growth(routed)
    reply = oai.embeddings.create(
        model="embed", input="one two three", extra_headers={"x-flaky": "503"}
    )
    assert len(reply.data) == 1 and reply.data[0].embedding
    growth.wait(
        {("mock-gemini", "embed", "success"): 1},
        {("flaky", "embed", "server_error"): 1, ("mock-gemini", "embed", "success"): 1},
    )


def test_token_counting_goes_to_the_first_backend_that_can_count(
    routed: Stack, claude: anthropic.Anthropic
) -> None:
    growth = Growth(routed)
    counted = claude.messages.count_tokens(
        model="to-mock-anthropic", messages=MESSAGES, extra_headers={"x-flaky": "503"}
    )
    assert counted.input_tokens == 3
    # Then one request: the growth is that request's alone (the count was no attempt).
    assert _answer("chat", routed, False, "to-mock-anthropic")
    model = "to-mock-anthropic"
    growth.wait(
        {("mock-anthropic", model, "success"): 1},
        {("flaky", model, "server_error"): 1, ("mock-anthropic", model, "success"): 1},
    )


def test_each_attempt_starts_from_the_clients_request(
    routed: Stack, claude: anthropic.Anthropic, flaky: Flaky
) -> None:
    """The second attempt gets the client's path, API and headers, not what the first
    attempt made of them (Envoy hands it the first's header map)."""
    routed.clear_mock_requests()
    before = len(flaky.requests)
    message = claude.messages.create(
        model="to-mock-anthropic",
        max_tokens=16,
        system="Answer briefly.",
        messages=MESSAGES,
        extra_headers={"x-flaky": "503"},
    )
    assert message.type == "message"
    path, _, body = flaky.requests[before]
    assert path == "/v1/chat/completions"  # the first attempt: Messages as chat, to OpenAI
    assert json.loads(body)["messages"][0]["role"] == "system"
    (second,) = routed.mock_requests()
    assert second["path"] == "/v1/messages"
    sent = json.loads(second["body"])
    assert sent["system"] == "Answer briefly." and sent["model"] == "claude-3-5-sonnet"
    headers = {k.lower(): v for k, v in second["headers"].items()}
    assert "authorization" not in headers  # the first attempt's credential is gone
    assert headers["x-api-key"] == UPSTREAM_KEY


def test_many_requests_falling_back_at_once_all_succeed(routed: Stack, oai: openai.OpenAI) -> None:
    """Envoy allows only 3 retries in flight per cluster unless told otherwise."""
    growth = Growth(routed)

    def one(_: int) -> str:
        reply = oai.chat.completions.create(
            model="fallback", messages=MESSAGES, extra_headers={"x-flaky": "503"}
        )
        return reply.choices[0].message.content or ""

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(one, range(48)))
    assert all(answers)
    growth.wait(
        {("mock-anthropic", "fallback", "success"): 48},
        {("flaky", "fallback", "server_error"): 48, ("mock-anthropic", "fallback", "success"): 48},
    )


def test_attempts_carry_the_header_labels_of_the_clients_request(
    tmp_path: Path, flaky: Flaky
) -> None:
    """With ``metrics.labels_from_headers``, each attempt is counted under the client's
    header values, as its request is, though the attempts removed the header before
    their backends (none of them forwards it)."""
    closed = free_port()

    def config(mock_port: int) -> dict[str, Any]:
        labelled = routing_config(mock_port, flaky.port, closed)
        tenant = {"header": "x-tenant-id", "label": "tenant", "values": ["acme"]}
        labelled["metrics"] = {"labels_from_headers": [tenant]}
        return labelled

    with running(Stack(tmp_path, config_factory=config)) as s:
        growth = Growth(s)
        oai = openai.OpenAI(base_url=f"{s.base_url}/v1", api_key="k", max_retries=0)
        before = len(flaky.requests)
        for model, tenant in (("fallback", "acme"), ("refused", "globex"), ("fallback", None)):
            headers = {"x-flaky": "503"} | ({"x-tenant-id": tenant} if tenant else {})
            raw = oai.chat.completions.with_raw_response.create(
                model=model, messages=MESSAGES, extra_headers=headers
            )
            # The attempt's answer named the client's values for the log, not the client.
            assert not [name for name in raw.headers if name.startswith("x-ai-gateway-")]
        assert all("x-tenant-id" not in h for _, h, _ in flaky.requests[before:])
        growth.wait(
            {
                ("mock-anthropic", "fallback", "success", "acme"): 1,
                ("mock-anthropic", "refused", "success", "other"): 1,
                ("mock-anthropic", "fallback", "success", "none"): 1,
            },
            {
                ("flaky", "fallback", "server_error", "acme"): 1,
                ("mock-anthropic", "fallback", "success", "acme"): 1,
                ("closed", "refused", "connect_failure", "other"): 1,
                ("mock-anthropic", "refused", "success", "other"): 1,
                ("flaky", "fallback", "server_error", "none"): 1,
                ("mock-anthropic", "fallback", "success", "none"): 1,
            },
        )
