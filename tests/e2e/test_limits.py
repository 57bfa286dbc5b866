"""Limits and budgets end to end through the real Envoy (docs/limits.md): no overshoot
under concurrency, reservations settled to real usage, dollars, requests per minute,
the 429 in each client API's shape with OpenAI's headers (as the official SDKs see
them), one budget across ``serve --workers`` processes and across replicas through a
real Redis, and a Redis outage under ``allow`` and ``deny``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis as redis_client

from tests.e2e.stack import RedisServer, Stack, default_config, running, wait_until
from tests.e2e.test_metrics import delta, snapshot
from tests.extproc.ops.test_workers import WorkersStack

TENANT = "x-tenant-id"
#: Single-letter words: the mock counts one prompt token per word, about half the bytes.
PROMPT = " ".join("a" * 1 for _ in range(200))
MESSAGES = [{"role": "user", "content": PROMPT}]
SHORT = [{"role": "user", "content": "hi"}]


def limited_config(mock_port: int, rules: list[dict[str, Any]], **limits: Any) -> dict[str, Any]:
    """The e2e config with a few models of its own for the limits under test."""
    config = default_config(mock_port)
    config["models"] += [
        {"name": "tenant-model", "backend": "mock-openai"},
        {"name": "settle-model", "backend": "mock-openai"},
        {"name": "priced-model", "backend": "mock-openai", "price": {"input": 1, "output": 2}},
        {"name": "rpm-model", "backend": "mock-openai"},
        {"name": "shape-model", "backend": "mock-openai"},
        {"name": "shape-claude", "backend": "mock-anthropic", "backend_model": "claude-x"},
        {"name": "cut-claude", "backend": "mock-anthropic", "backend_model": "claude-x"},
    ]
    config["limits"] = {"rules": rules, **limits}
    return config


def body_of(model: str, max_tokens: int, messages: list[dict[str, str]] = MESSAGES) -> bytes:
    return json.dumps({"model": model, "messages": messages, "max_tokens": max_tokens}).encode()


#: What one request to tenant-model reserves: its body's bytes plus max_tokens.
TENANT_MAX_TOKENS = 20
TENANT_RESERVATION = len(body_of("tenant-model", TENANT_MAX_TOKENS)) + TENANT_MAX_TOKENS
#: What it uses: 200 prompt tokens and 20 completion tokens.
TENANT_USAGE = 200 + TENANT_MAX_TOKENS
TENANT_LIMIT = 20 * TENANT_USAGE  # a budget for about 20 requests
SETTLE_MAX_TOKENS = 40
SETTLE_RESERVATION = len(body_of("settle-model", SETTLE_MAX_TOKENS, SHORT)) + SETTLE_MAX_TOKENS
SETTLE_LIMIT = 10 * SETTLE_RESERVATION  # a limiter that never settles admits 10
CUT_LIMIT = 10_000

RULES = [
    {
        "name": "tenant-tokens",
        "key": {"header": TENANT},
        "models": ["tenant-model"],
        "tokens": {"limit": TENANT_LIMIT, "per": "hour"},
    },
    {
        "name": "settle-tokens",
        "key": {"header": TENANT},
        "models": ["settle-model"],
        "tokens": {"limit": SETTLE_LIMIT, "per": "hour"},
    },
    {
        "name": "tenant-dollars",
        "key": {"header": TENANT},
        "models": ["priced-model"],
        "usd": {"limit": 0.005, "per": "day"},
    },
    {
        "name": "cut-tokens",
        "key": {"header": TENANT},
        "models": ["cut-claude"],
        "tokens": {"limit": CUT_LIMIT, "per": "hour"},
    },
    {"name": "everyone-rpm", "models": ["rpm-model"], "requests": {"limit": 5, "per": "minute"}},
    {
        "name": "shape-rpm",
        "key": {"header": TENANT},
        "models": ["shape-model", "shape-claude"],
        "requests": {"limit": 1, "per": "minute"},
    },
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("limits")
    factory = lambda port: limited_config(port, RULES)  # noqa: E731
    with running(Stack(workdir, config_factory=factory)) as s:
        yield s


async def post_many(
    base_url: str, bodies: list[bytes], headers: dict[str, str]
) -> list[httpx.Response]:
    """Every body POSTed at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        return list(
            await asyncio.gather(
                *(client.post("/v1/chat/completions", content=b, headers=headers) for b in bodies)
            )
        )


def model_tokens(text: str, model: str) -> float:
    """Prompt plus completion tokens the metrics recorded for ``model``."""
    grown = delta({}, snapshot(text), "aigateway_model_tokens_total")
    return sum(v for k, v in grown.items() if k[1] == model and k[2] in ("prompt", "completion"))


def requests_of(text: str, model: str, status: str) -> float:
    grown = delta({}, snapshot(text), "aigateway_requests_total")
    return sum(v for k, v in grown.items() if k[1] == model and k[2] == status)


def rate_limited(text: str, model: str, rule: str) -> float:
    grown = delta({}, snapshot(text), "aigateway_rate_limited_total")
    return sum(v for k, v in grown.items() if k[1] == model and k[2] == rule)


def test_concurrent_requests_never_overshoot_the_budget(stack: Stack) -> None:
    bodies = [body_of("tenant-model", TENANT_MAX_TOKENS) for _ in range(60)]
    headers = {
        TENANT: "acme",
        "content-type": "application/json",
        "x-mock-output-tokens": str(TENANT_MAX_TOKENS),
        "x-mock-ttft-ms": "300",  # all 60 in flight at once
    }
    answers = asyncio.run(post_many(stack.base_url, bodies, headers))
    statuses = [a.status_code for a in answers]
    admitted = statuses.count(200)
    assert set(statuses) == {200, 429}
    assert admitted >= TENANT_LIMIT // TENANT_RESERVATION
    assert admitted < 60
    wait_until(
        "every request to be recorded",
        lambda: (
            requests_of(stack.metrics_text(), "tenant-model", "success")
            + requests_of(stack.metrics_text(), "tenant-model", "error")
            == 60
        ),
    )
    text = stack.metrics_text()
    assert model_tokens(text, "tenant-model") == admitted * TENANT_USAGE
    assert model_tokens(text, "tenant-model") <= TENANT_LIMIT
    assert requests_of(text, "tenant-model", "error") == 60 - admitted
    assert rate_limited(text, "tenant-model", "tenant-tokens") == 60 - admitted


def test_reservations_are_settled_to_real_usage(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    for i in range(40):
        answer = client.chat.completions.with_raw_response.create(
            model="settle-model",
            messages=SHORT,  # type: ignore[arg-type]
            max_tokens=SETTLE_MAX_TOKENS,
            extra_headers={TENANT: "settler", "x-mock-output-tokens": "5"},
        )
        assert answer.http_response.status_code == 200, i
        assert answer.headers["x-ratelimit-limit-tokens"] == str(SETTLE_LIMIT)
    # Forty requests where a limiter that kept the reservations would admit ten.
    remaining = int(answer.headers["x-ratelimit-remaining-tokens"])
    assert remaining >= SETTLE_LIMIT - 40 * (1 + 5) - 2 * SETTLE_RESERVATION


@pytest.mark.parametrize("fault", ["truncate", "reset"])
def test_a_stream_cut_short_is_charged_what_was_reported_and_streamed(
    stack: Stack, fault: str
) -> None:
    """Anthropic reports the input in ``message_start`` and the output only at the end:
    cut after 5 of 30 tokens (the upstream's body ends early, or its connection resets),
    the request is charged its input plus what reached the client (each token is at
    least a byte of it, capped at max_tokens)."""
    tenant = f"cut-{fault}"
    headers = {
        TENANT: tenant,
        "content-type": "application/json",
        "x-mock-output-tokens": "30",
        "x-mock-fault": fault,
        "x-mock-fault-after": "5",
        "x-mock-itl-ms": "100",  # the client has the first chunks before the reset
    }
    cut = json.dumps(
        {"model": "cut-claude", "messages": SHORT, "max_tokens": 30, "stream": True}
    ).encode()
    before = requests_of(stack.metrics_text(), "cut-claude", "error")
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        received = b""
        try:
            with client.stream("POST", "/v1/chat/completions", content=cut, headers=headers) as r:
                assert r.status_code == 200
                for chunk in r.iter_bytes():
                    received += chunk
        except httpx.HTTPError:
            assert fault == "reset"
        assert b'"content":"' in received
        wait_until(
            "the cut request to be recorded (after its settlement)",
            lambda: requests_of(stack.metrics_text(), "cut-claude", "error") == before + 1,
        )
        probe = body_of("cut-claude", 10, SHORT)
        answer = client.post("/v1/chat/completions", content=probe, headers={TENANT: tenant})
    assert answer.status_code == 200
    charged = CUT_LIMIT - (len(probe) + 10) - int(answer.headers["x-ratelimit-remaining-tokens"])
    assert charged == 1 + 30  # one prompt word reported; the 5 tokens' chunks are > 30 bytes


def test_dollars(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    admitted = 0
    with pytest.raises(openai.RateLimitError) as refused:
        for _ in range(200):
            client.chat.completions.create(
                model="priced-model",
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=50,
                extra_headers={TENANT: "spender", "x-mock-output-tokens": "10"},
            )
            admitted += 1
    # Each reserves ~$0.00056 ($1 and $2 per million tokens: ~460 body bytes, 50 output
    # tokens) and uses $0.00022: settled, about 20 fit where reservations alone fit 8.
    assert admitted >= 16
    assert "tenant-dollars" in refused.value.message
    cost = delta({}, snapshot(stack.metrics_text()), "aigateway_model_cost_usd_total")
    spent = sum(v for k, v in cost.items() if k[1] == "priced-model")
    assert spent == pytest.approx(admitted * (200 * 1 + 10 * 2) / 1e6)
    assert spent <= 0.005


def test_requests_per_minute(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    for i in range(5):
        answer = client.chat.completions.with_raw_response.create(
            model="rpm-model",
            messages=MESSAGES,
            max_tokens=5,  # type: ignore[arg-type]
        )
        assert answer.headers["x-ratelimit-limit-requests"] == "5"
        assert answer.headers["x-ratelimit-remaining-requests"] == str(4 - i)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="rpm-model", messages=MESSAGES, max_tokens=5)  # type: ignore[arg-type]
    headers = refused.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    wait_until(
        "the refusal to be counted",
        lambda: rate_limited(stack.metrics_text(), "rpm-model", "everyone-rpm") == 1,
    )
    text = stack.metrics_text()
    assert requests_of(text, "rpm-model", "error") == 1
    assert requests_of(text, "rpm-model", "success") == 5
    assert "acme" not in text and "spender" not in text  # budget keys are never labels


def test_chat_completions_refusal_shape(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    tenant = {TENANT: "chat-shape"}
    first = client.chat.completions.with_raw_response.create(
        model="shape-model",
        messages=MESSAGES,
        extra_headers=tenant,  # type: ignore[arg-type]
    )
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(
            model="shape-model",
            messages=MESSAGES,
            extra_headers=tenant,  # type: ignore[arg-type]
        )
    error = refused.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-limit-requests"] == "1"


def test_responses_refusal_shape(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    tenant = {TENANT: "responses-shape"}
    first = client.responses.with_raw_response.create(
        model="shape-model", input="hello there", extra_headers=tenant
    )
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model="shape-model", input="hello there", extra_headers=tenant)
    assert refused.value.code == "rate_limit_exceeded"
    assert int(refused.value.response.headers["retry-after"]) >= 1


def test_messages_refusal_shape(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.base_url, api_key="k", max_retries=0)
    tenant = {TENANT: "messages-shape"}
    first = client.messages.with_raw_response.create(
        model="shape-claude",
        max_tokens=16,
        messages=MESSAGES,
        extra_headers=tenant,  # type: ignore[arg-type]
    )
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(anthropic.RateLimitError) as refused:
        client.messages.create(
            model="shape-claude",
            max_tokens=16,
            messages=MESSAGES,
            extra_headers=tenant,  # type: ignore[arg-type]
        )
    error = refused.value
    assert error.status_code == 429
    assert error.body["type"] == "error"  # type: ignore[index]
    assert error.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert int(error.response.headers["retry-after"]) >= 1


# -- one budget across processes ------------------------------------------------------------

SHARED_RULES = [{"name": "shared-rpm", "requests": {"limit": 10, "per": "minute"}}]


def chat_body() -> bytes:
    return body_of("rpm-model", 5)


def test_workers_share_one_budget(tmp_path: Path) -> None:
    factory = lambda port: limited_config(port, SHARED_RULES)  # noqa: E731
    with running(WorkersStack(tmp_path / "workers", config_factory=factory)) as s:
        headers = {"content-type": "application/json", "x-mock-ttft-ms": "200"}
        answers = asyncio.run(post_many(s.base_url, [chat_body() for _ in range(30)], headers))
        assert [a.status_code for a in answers].count(200) == 10
        assert all(s.requests_counted(i) > 0 for i in range(2))  # both workers served


#: 2000 one-letter words: 2000 prompt tokens for the mock, about 4 KB of body.
BIG = [{"role": "user", "content": " ".join("a" for _ in range(2000))}]
BIG_USAGE = 2000 + 20


def test_replicas_share_one_budget_through_redis(tmp_path: Path) -> None:
    """A tenant with a 100,000-token hourly budget hammers two replicas (two Envoys, two
    processors, one Redis) from 80 connections: stopped at its budget, never past it,
    and its client library is told to retry when the window frees room."""
    redis = RedisServer(tmp_path / "redis").start()
    rules = [
        {
            "name": "tenant-tokens",
            "key": {"header": TENANT},
            "tokens": {"limit": 100_000, "per": "hour"},
        }
    ]
    try:
        factory = lambda port: limited_config(port, rules, store=redis.url)  # noqa: E731
        with (
            running(Stack(tmp_path / "a", config_factory=factory)) as a,
            running(Stack(tmp_path / "b", config_factory=factory)) as b,
        ):
            headers = {
                TENANT: "hammer",
                "content-type": "application/json",
                "x-mock-output-tokens": "20",
            }
            body = body_of("tenant-model", 20, BIG)

            async def both() -> list[httpx.Response]:
                halves = await asyncio.gather(
                    post_many(a.base_url, [body] * 40, headers),
                    post_many(b.base_url, [body] * 40, headers),
                )
                return [*halves[0], *halves[1]]

            statuses = [r.status_code for r in asyncio.run(both())]
            admitted = statuses.count(200)
            assert set(statuses) == {200, 429}
            assert admitted >= 100_000 // (len(body) + 20)  # what reservations alone fit

            # Settled, the hammering left room for a few more; then the SDK is refused.
            client = openai.OpenAI(base_url=f"{a.base_url}/v1", api_key="k", max_retries=0)
            sent = 80
            with pytest.raises(openai.RateLimitError) as refused:
                for _ in range(100_000 // BIG_USAGE):
                    sent += 1
                    client.chat.completions.create(
                        model="tenant-model",
                        messages=BIG,  # type: ignore[arg-type]
                        max_tokens=20,
                        extra_headers={TENANT: "hammer", "x-mock-output-tokens": "20"},
                    )
                    admitted += 1
            # The oldest tokens leave the hour's window in a little under an hour.
            assert 3000 < int(refused.value.response.headers["retry-after"]) <= 3600

            def recorded() -> tuple[float, float]:
                texts = [x.metrics_text() for x in (a, b)]
                requests = sum(
                    requests_of(t, "tenant-model", s) for t in texts for s in ("success", "error")
                )
                return requests, sum(model_tokens(t, "tenant-model") for t in texts)

            wait_until("every request to be recorded", lambda: recorded()[0] == sent)
            assert recorded()[1] == admitted * BIG_USAGE <= 100_000
    finally:
        redis.stop()


@pytest.mark.parametrize("decision", ["allow", "deny"])
def test_redis_stopped_mid_run(tmp_path: Path, decision: str) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    rules = [
        {"name": "tenant-rpm", "key": {"header": TENANT}, "requests": {"limit": 3, "per": "hour"}}
    ]
    factory = lambda port: limited_config(  # noqa: E731
        port, rules, store=redis.url, on_store_error=decision
    )
    try:
        with running(Stack(tmp_path / "stack", config_factory=factory)) as s:
            client = openai.OpenAI(base_url=f"{s.base_url}/v1", api_key="k", max_retries=0)

            def ask() -> int:
                try:
                    client.chat.completions.create(
                        model="rpm-model",
                        messages=MESSAGES,  # type: ignore[arg-type]
                        max_tokens=5,
                        extra_headers={TENANT: "t"},
                    )
                except openai.APIStatusError as exc:
                    return exc.status_code
                return 200

            assert [ask() for _ in range(4)] == [200, 200, 200, 429]
            redis.stop()
            during = [ask() for _ in range(3)]
            assert during == ([200] * 3 if decision == "allow" else [503] * 3)
            redis.start()  # same port, empty: the budget starts again
            wait_until("the limits to work again", lambda: ask() == 200)
            assert [ask() for _ in range(3)][-1] == 429
            serve = s.procs["serve"].output()
            assert serve.count("cannot be reached") == 1, serve
            assert serve.count("reachable again") == 1, serve
            grown = delta({}, snapshot(s.metrics_text()), "aigateway_rate_limit_store_errors_total")
            assert grown == {(decision,): 3.0}
    finally:
        redis.stop()


def test_redis_with_an_acl_user_and_a_rotated_password(tmp_path: Path) -> None:
    """The gateway logs in to Redis as an ACL user whose password is in a file (never
    in the config); when Redis stops accepting it, requests are refused (``deny``) with
    one clear line in the log, and the password shows in no log, metric or answer."""
    password, rotated = "redis-pass-5c81e2", "rotated-pass-9d04a7"
    admin = "admin-pass-3e7b10"
    redis = RedisServer(
        tmp_path / "redis",
        options=(
            "--requirepass",
            admin,
            "--user",
            "aigateway",
            "on",
            f">{password}",
            "~aigateway:*",
            "+@all",
            "-@dangerous",
        ),
    ).start()
    (tmp_path / "redis-password").write_text(f"{password}\n")
    rules = [
        {"name": "tenant-rpm", "key": {"header": TENANT}, "requests": {"limit": 3, "per": "hour"}}
    ]
    login = {"username": "aigateway", "password": {"file": str(tmp_path / "redis-password")}}
    factory = lambda port: limited_config(  # noqa: E731
        port, rules, store=redis.url, redis=login, on_store_error="deny"
    )
    control = redis_client.Redis(port=redis.port, password=admin)
    try:
        with running(
            Stack(tmp_path / "stack", config_factory=factory, serve_args=["--log-level", "debug"])
        ) as s:
            client = openai.OpenAI(base_url=f"{s.base_url}/v1", api_key="k", max_retries=0)
            answers: list[str] = []

            def ask() -> int:
                try:
                    client.chat.completions.create(
                        model="rpm-model",
                        messages=SHORT,  # type: ignore[arg-type]
                        max_tokens=5,
                        extra_headers={TENANT: "t"},
                    )
                except openai.APIStatusError as exc:
                    answers.append(exc.response.text)
                    return exc.status_code
                return 200

            assert [ask() for _ in range(4)] == [200, 200, 200, 429]
            assert control.keys("aigateway:*")  # the budget is in Redis

            # The password is rotated on the server and the gateway's connections dropped.
            control.acl_setuser(
                "aigateway", enabled=True, reset_passwords=True, passwords=[f"+{rotated}"]
            )
            control.client_kill_filter(user="aigateway")
            assert [ask() for _ in range(2)] == [503, 503]
            assert "limits_unavailable" in answers[-1]

            control.acl_setuser("aigateway", enabled=True, passwords=[f"+{password}"])
            wait_until("the limits to work again", lambda: ask() == 429)
            serve = s.procs["serve"].output()
            refused = [line for line in serve.splitlines() if "cannot be reached" in line]
            assert len(refused) == 1, serve
            assert (
                f"Redis store 127.0.0.1:{redis.port} refused the gateway (invalid"
                " username-password pair or user is disabled.): check limits.redis"
            ) in refused[0]
            assert serve.count("reachable again") == 1, serve
            seen = s.logs() + s.metrics_text() + "".join(answers)
            for secret in (password, rotated):
                assert secret not in seen
    finally:
        control.close()
        redis.stop()
