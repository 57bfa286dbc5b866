"""Exact accounting under load: thousands of requests, 16+ at a time, mixing every way
a request can end; afterwards ``/metrics`` must equal what was sent, per (backend,
model, status) and per token type. Nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.stack import Stack, wait_until
from tests.e2e.test_metrics import delta, snapshot
from tests.reliability.conftest import stream_text

REQUESTS = 5000
CONCURRENCY = 24
SEED = 20261128

CHAT_MODELS = {
    "gpt-4o-mini": "mock-openai",
    "azure-gpt-4o": "mock-azure",
    "bedrock-claude": "mock-bedrock",
    "claude-sonnet": "mock-anthropic",
}
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
UNKNOWN = ("unknown", "unknown")


@dataclass
class Scenario:
    kind: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/v1/chat/completions"
    stream: bool = False
    leave_early: bool = False
    labels: tuple[str, str, str] = ("unknown", "unknown", "error")
    tokens: dict[str, int] = field(default_factory=dict)
    # What the client must see: a status (0: a broken stream is fine) and, for
    # successes, the completion word count.
    status: int = 200
    completion_words: int | None = None


def chat_body(
    rng: random.Random, model: str, stream: bool, include_usage: bool
) -> tuple[bytes, int]:
    system = " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))
    user = " ".join(rng.choices(WORDS, k=rng.randint(1, 30)))
    doc: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    if stream:
        doc["stream"] = True
        if include_usage:
            doc["stream_options"] = {"include_usage": True}
    return json.dumps(doc).encode(), len(system.split()) + len(user.split())


def make_scenario(rng: random.Random) -> Scenario:
    roll = rng.random()
    model = rng.choice(list(CHAT_MODELS))
    backend = CHAT_MODELS[model]
    stream = rng.random() < 0.5
    body, prompt = chat_body(rng, model, stream, include_usage=rng.random() < 0.5)
    if roll < 0.55:  # success
        n = rng.randint(1, 12)
        headers = {"x-mock-output-tokens": str(n)}
        tokens = {"prompt": prompt, "completion": n, "total": prompt + n}
        if rng.random() < 0.2:
            cached = rng.randint(1, prompt)
            headers["x-mock-cached-tokens"] = str(cached)
            tokens["cached_prompt"] = cached
        return Scenario(
            "success",
            body,
            headers,
            stream=stream,
            labels=(backend, model, "success"),
            tokens=tokens,
            completion_words=n,
        )
    if roll < 0.60:
        words = rng.randint(1, 9)
        emb = json.dumps(
            {"model": "text-embedding-3-small", "input": " ".join(rng.choices(WORDS, k=words))}
        )
        return Scenario(
            "embeddings",
            emb.encode(),
            path="/v1/embeddings",
            labels=("mock-openai", "text-embedding-3-small", "success"),
            tokens={"prompt": words, "total": words},
        )
    if roll < 0.65:
        return Scenario("bad-json", body[: rng.randint(0, len(body) - 1)] + b"}{", status=400)
    if roll < 0.70:
        doc = json.loads(body)
        doc["model"] = f"no-such-model-{rng.randint(0, 10**9)}"
        return Scenario("unknown-model", json.dumps(doc).encode(), stream=stream, status=404)
    if roll < 0.76:
        status = rng.choice([429, 500, 503])
        return Scenario(
            "upstream-status",
            body,
            {"x-mock-status": str(status)},
            stream=stream,
            labels=(backend, model, "error"),
            status=status,
        )
    if roll < 0.80:  # the upstream resets the connection mid-stream
        headers = {"x-mock-fault": "reset", "x-mock-output-tokens": "6"}
        if model in REPORTS_USAGE_FIRST:
            # The reset comes well after message_start, whose usage is then counted.
            headers |= {"x-mock-itl-ms": "100", "x-mock-fault-after": "3"}
        return Scenario(
            "upstream-reset",
            _streamed(body),
            headers,
            stream=True,
            labels=(backend, model, "error"),
            tokens=_reported_first(model, prompt),
            status=0,
        )
    if roll < 0.83:  # the client leaves after its first chunk
        return Scenario(
            "client-leaves",
            _streamed(body),
            {"x-mock-output-tokens": "40", "x-mock-itl-ms": "20"},
            stream=True,
            leave_early=True,
            labels=(backend, model, "error"),
            tokens=_reported_first(model, prompt),
            status=0,
        )
    phase = rng.choice(["request_headers", "request_body", "response_headers", "response_body"])
    routed = phase.startswith("response")
    return Scenario(
        f"fault-{phase}",
        body,
        {"x-fault-phase": phase},
        stream=stream,
        labels=(backend, model, "error") if routed else (*UNKNOWN, "error"),
        status=0 if (phase == "response_body" and stream) else 500,
    )


# Anthropic reports input tokens (and one output token) in message_start, before any
# content: tokens the backend reported are counted whatever becomes of the request.
REPORTS_USAGE_FIRST = {"claude-sonnet"}


def _reported_first(model: str, prompt: int) -> dict[str, int]:
    if model not in REPORTS_USAGE_FIRST:
        return {}  # the others report usage at the end of the stream
    return {"prompt": prompt, "completion": 1, "total": prompt + 1}


def _streamed(body: bytes) -> bytes:
    doc = json.loads(body)
    doc["stream"] = True
    return json.dumps(doc).encode()


async def send(client: httpx.AsyncClient, s: Scenario) -> str | None:
    """Sends one scenario; returns a description of what went wrong, or None."""
    headers = {"content-type": "application/json", **s.headers}
    try:
        async with client.stream("POST", s.path, content=s.body, headers=headers) as response:
            if s.leave_early:
                async for _ in response.aiter_raw():
                    break  # leaving: the connection closes with the body unread
                return None if response.status_code == 200 else f"status {response.status_code}"
            raw = await response.aread()
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return None if s.status == 0 else f"{s.kind}: connection broken"
    if s.status == 0:
        return None  # a clean end is fine too where a reset was possible
    if response.status_code != s.status:
        return f"{s.kind}: status {response.status_code} != {s.status}: {raw[:200]!r}"
    if s.status != 200:
        doc = json.loads(raw)
        return (
            None if isinstance(doc["error"]["message"], str) else f"{s.kind}: not an OpenAI error"
        )
    if s.completion_words is not None:
        text = _content(raw, s.stream)
        if len(text.split()) != s.completion_words:
            return f"{s.kind}: content {text!r} is not {s.completion_words} words"
    return None


def _content(raw: bytes, stream: bool) -> str:
    if not stream:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    return stream_text(raw)


def test_every_request_is_counted_exactly_once(rstack: Stack) -> None:
    rng = random.Random(SEED)
    scenarios = [make_scenario(rng) for _ in range(REQUESTS)]
    kinds = Counter(
        s.kind.split("-")[0] if s.kind.startswith("fault") else s.kind for s in scenarios
    )
    assert all(
        kinds[k] > 20
        for k in (
            "success",
            "embeddings",
            "bad-json",
            "unknown-model",
            "upstream-status",
            "upstream-reset",
            "client-leaves",
            "fault",
        )
    )
    before = snapshot(rstack.metrics_text())

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=rstack.base_url, limits=limits, timeout=30) as client:
            queue = iter(scenarios)
            problems: list[str] = []

            async def worker() -> None:
                for s in queue:
                    problem = await send(client, s)
                    if problem:
                        problems.append(problem)

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return problems

    problems = asyncio.run(run())
    assert problems == []

    expected_requests: Counter[tuple[str, ...]] = Counter(s.labels for s in scenarios)
    expected_tokens: Counter[tuple[str, ...]] = Counter()
    for s in scenarios:
        for kind, n in s.tokens.items():
            expected_tokens[(*s.labels[:2], kind)] += n

    after: dict[Any, float] = {}

    def all_counted() -> bool:
        nonlocal after
        after = snapshot(rstack.metrics_text())
        return sum(delta(before, after, "aigateway_requests_total").values()) >= REQUESTS

    wait_until("every request to be recorded", all_counted, timeout=60)
    got_requests = delta(before, after, "aigateway_requests_total")
    assert got_requests == dict(expected_requests)  # nothing lost, nothing twice
    got_tokens = {
        k: v for k, v in delta(before, after, "aigateway_model_tokens_total").items() if v
    }
    assert got_tokens == dict(expected_tokens)
    assert delta(before, after, "aigateway_total_latency_seconds_count") == dict(expected_requests)
    # The server kept serving throughout and still does.
    assert rstack.procs["serve"].popen.poll() is None
