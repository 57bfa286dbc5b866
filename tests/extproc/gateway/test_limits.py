"""The limits core: sliding-window math of every store (the memory store in one
process and in the SQLite file ``serve --workers`` shares, and a real redis-server),
all-or-nothing reservations, settlement, the limiter's headers and what it does while
its store is down."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from aigateway.extproc.framework.processor import Headers, ImmediateResponse, Outcome
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.chat import ChatCompletionProcessor
from aigateway.extproc.gateway.config import (
    RedisCredentials,
    ResolvedSecrets,
    Secret,
    parse_config,
)
from aigateway.extproc.gateway.limits import (
    Charge,
    Kind,
    Limiter,
    LimitStore,
    ModelLimits,
    Price,
    Rule,
    Usage,
    Verdict,
)
from aigateway.extproc.gateway.limits.limiter import duration
from aigateway.extproc.gateway.limits.local_store import LocalStore
from aigateway.extproc.gateway.limits.redis_store import RedisStore
from aigateway.extproc.gateway.limits.sqlite_store import SqliteStore, create_store_file
from aigateway.instrumentation.facts import METADATA_NAMESPACE
from tests.e2e.stack import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


_bucket_ids = iter(range(10**6))


@pytest.fixture(params=["local", "sqlite", "redis"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[LimitStore]:
    made: LimitStore
    if request.param == "local":
        made = LocalStore(clock=clock)
    elif request.param == "sqlite":
        made = SqliteStore(None, clock=clock)
    else:
        made = RedisStore(request.getfixturevalue("redis_server").url, clock=clock)
    yield made
    await made.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def bucket() -> str:
    return f"test/{next(_bucket_ids)}-{id(object())}"


def charge(bucket: str, amount: int, limit: int = 100, window: float = 60.0) -> Charge:
    return Charge(bucket, limit, window, amount)


async def test_admits_up_to_the_limit_and_no_further(store: LimitStore, bucket: str) -> None:
    first = await store.reserve([charge(bucket, 60)])
    second = await store.reserve([charge(bucket, 40)])
    third = await store.reserve([charge(bucket, 1)])
    assert (first.refused, second.refused, third.refused) == (None, None, 0)
    assert second.quotas[0].used == 100
    assert third.quotas[0].used == 100
    assert first.entry != second.entry


async def test_the_window_slides(store: LimitStore, bucket: str, clock: Clock) -> None:
    await store.reserve([charge(bucket, 60)])  # at t0
    clock.now += 30
    await store.reserve([charge(bucket, 40)])  # at t0 + 30
    clock.now += 29  # t0 + 59: both still in the window
    refused = await store.reserve([charge(bucket, 10)])
    assert refused.refused == 0
    assert refused.quotas[0].retry_after == pytest.approx(1.0)  # the first leaves at t0 + 60
    assert refused.quotas[0].reset == pytest.approx(1.0)
    clock.now += 1  # t0 + 60: the first entry is out, the second holds 40
    admitted = await store.reserve([charge(bucket, 60)])
    assert admitted.refused is None
    assert admitted.quotas[0].used == 100
    assert admitted.quotas[0].reset == pytest.approx(30.0)  # the t0 + 30 entry leaves next


async def test_no_window_ever_holds_more_than_the_limit(
    store: LimitStore, bucket: str, clock: Clock
) -> None:
    # A reservation every 7 seconds for 10 minutes: any 60 s holds at most 100.
    admitted: list[tuple[float, int]] = []
    for step in range(90):
        amount = 10 + step % 25
        if (await store.reserve([charge(bucket, amount)])).refused is None:
            admitted.append((clock.now, amount))
        clock.now += 7
    assert len(admitted) > 20
    for start, _ in admitted:
        assert sum(a for t, a in admitted if start <= t < start + 60) <= 100


async def test_all_or_nothing(store: LimitStore, bucket: str) -> None:
    roomy, tight = bucket + "/roomy", bucket + "/tight"
    await store.reserve([charge(tight, 90)])
    refused = await store.reserve([charge(roomy, 50), charge(tight, 20)])
    assert refused.refused == 1
    assert refused.quotas[0].used == 0
    after = await store.reserve([charge(roomy, 100)])
    assert after.refused is None  # the refused request took nothing from roomy


async def test_settling_replaces_the_reservation(store: LimitStore, bucket: str) -> None:
    reserved = await store.reserve([charge(bucket, 80)])
    assert (await store.reserve([charge(bucket, 30)])).refused == 0
    await store.settle(reserved.entry, [charge(bucket, 80)], [5])
    admitted = await store.reserve([charge(bucket, 95)])
    assert admitted.refused is None
    assert admitted.quotas[0].used == 100


async def test_settling_an_entry_out_of_its_window_changes_nothing(
    store: LimitStore, bucket: str, clock: Clock
) -> None:
    old = await store.reserve([charge(bucket, 50)])
    clock.now += 61
    await store.reserve([charge(bucket, 100)])
    await store.settle(old.entry, [charge(bucket, 50)], [0])
    assert (await store.reserve([charge(bucket, 1)])).quotas[0].used == 100


async def test_more_than_the_limit_never_fits(store: LimitStore, bucket: str) -> None:
    refused = await store.reserve([charge(bucket, 101)])
    assert refused.refused == 0
    assert refused.quotas[0].retry_after == 60.0


@pytest.mark.parametrize("kind", ["local", "sqlite"])
async def test_budgets_clients_make_up_do_not_pile_up(kind: str, clock: Clock) -> None:
    store = LocalStore(clock=clock) if kind == "local" else SqliteStore(None, clock=clock)
    try:
        for i in range(300):  # a new budget key every 10 s, each used once
            await store.reserve([charge(f"tenant/{i}", 1)])
            clock.now += 10
        if isinstance(store, LocalStore):
            held = len(store)
        else:
            held = await store._run(
                lambda db: db.execute("SELECT count(*) FROM totals").fetchone()[0]
            )
        assert held <= 8  # the six of the last minute, and what the sweep has not reached
    finally:
        await store.close()


async def test_processes_sharing_one_file_share_one_budget(tmp_path: Path) -> None:
    path = str(tmp_path / "limits.sqlite3")
    create_store_file(path)
    stores = [SqliteStore(path), SqliteStore(path)]
    try:
        decisions = await asyncio.gather(
            *(stores[i % 2].reserve([charge("shared", 7, limit=100)]) for i in range(40))
        )
    finally:
        for s in stores:
            await s.close()
    assert sum(d.refused is None for d in decisions) == 14  # 14 * 7 = 98 <= 100


async def test_concurrent_redis_clients_share_one_budget(redis_server: RedisServer) -> None:
    stores = [RedisStore(redis_server.url), RedisStore(redis_server.url)]
    try:
        decisions = await asyncio.gather(
            *(stores[i % 2].reserve([charge("shared-redis", 7, limit=100)]) for i in range(40))
        )
    finally:
        for s in stores:
            await s.close()
    assert sum(d.refused is None for d in decisions) == 14


# -- the limiter --------------------------------------------------------------------------


def headers(**values: str) -> Headers:
    return Headers([(k.replace("_", "-"), v) for k, v in values.items()])


def limits(*rules: Rule, price: Price | None = None) -> ModelLimits:
    return ModelLimits(rules, max_output_tokens=100, price=price)


async def test_headers_name_the_tightest_rule_of_each_kind(tmp_path: Path) -> None:
    limiter = Limiter({}, SqliteStore(None))
    try:
        model = limits(
            Rule("big", Kind.TOKENS, 10_000, 3600.0),
            Rule("small", Kind.TOKENS, 1_000, 60.0, header="x-tenant"),
            Rule("rpm", Kind.REQUESTS, 10, 60.0),
        )
        admission = await limiter.admit(model, headers(x_tenant="acme"), 150, 50)
        assert admission.verdict is Verdict.ADMITTED
        assert dict(admission.headers) == {
            "x-ratelimit-limit-requests": "10",
            "x-ratelimit-remaining-requests": "9",
            "x-ratelimit-reset-requests": "1m0s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "800",
            "x-ratelimit-reset-tokens": "1m0s",
        }
        # Another tenant has its own budget; the shared ones are shared.
        other = await limiter.admit(model, headers(x_tenant="globex"), 150, 50)
        assert dict(other.headers)["x-ratelimit-remaining-tokens"] == "800"
        assert dict(other.headers)["x-ratelimit-remaining-requests"] == "8"
        assert other.grant is not None
        await limiter.settle(other.grant, Usage(10, 5))
        await limiter.settle(other.grant, Usage(1000, 1000))  # once only
        again = await limiter.admit(model, headers(x_tenant="globex"), 100, 0)
        assert dict(again.headers)["x-ratelimit-remaining-tokens"] == "885"
    finally:
        await limiter.close()


async def test_a_refusal_says_when_to_retry(clock: Clock) -> None:
    limiter = Limiter({}, SqliteStore(None, clock=clock))
    try:
        model = limits(Rule("tpm", Kind.TOKENS, 1_000, 60.0))
        assert (await limiter.admit(model, None, 500, 100)).verdict is Verdict.ADMITTED
        clock.now += 20.5
        refused = await limiter.admit(model, None, 500, 100)
        assert refused.verdict is Verdict.REFUSED
        assert refused.rule == "tpm"
        assert not refused.too_large
        assert dict(refused.headers)["retry-after"] == "40"  # 39.5 s, rounded up
        assert dict(refused.headers)["retry-after-ms"] == "39500"
        assert dict(refused.headers)["x-ratelimit-remaining-tokens"] == "400"
        assert (await limiter.admit(model, None, 2000, 0)).too_large
    finally:
        await limiter.close()


async def test_dollars_are_reserved_at_the_most_and_settled_exactly() -> None:
    limiter = Limiter({}, SqliteStore(None))
    try:
        # $1 per million input and $2 per million output tokens; $0.01 a day.
        price = Price(1.0, 2.0, cached_input=0.5)
        model = limits(Rule("usd", Kind.USD, 10_000_000, 86400.0), price=price)
        first = await limiter.admit(model, None, 1000, 4000)  # reserves $0.009
        assert first.verdict is Verdict.ADMITTED and first.grant is not None
        assert (await limiter.admit(model, None, 1000, 4000)).verdict is Verdict.REFUSED
        # 1000 prompt tokens of which 400 cached, 100 output: $0.0009
        await limiter.settle(first.grant, Usage(1000, 100, cached_input_tokens=400))
        assert price.nanodollars(Usage(1000, 100, 400)) == pytest.approx(1_000_000)
        assert (await limiter.admit(model, None, 1000, 4000)).verdict is Verdict.ADMITTED
    finally:
        await limiter.close()


class DownStore:
    def __init__(self) -> None:
        self.down = True
        self.inner = SqliteStore(None)

    async def reserve(self, charges: object) -> object:
        from aigateway.extproc.gateway.limits import StoreUnavailable

        if self.down:
            raise StoreUnavailable("test store: connection refused")
        return await self.inner.reserve(charges)  # type: ignore[arg-type]

    async def settle(self, *args: object) -> None:
        await self.inner.settle(*args)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.inner.close()


@pytest.mark.parametrize("deny", [False, True])
async def test_an_outage_is_decided_by_config_and_logged_once(
    deny: bool, caplog: pytest.LogCaptureFixture
) -> None:
    store = DownStore()
    limiter = Limiter({}, store, deny_on_store_error=deny)  # type: ignore[arg-type]
    model = limits(Rule("tpm", Kind.TOKENS, 1_000, 60.0))
    try:
        with caplog.at_level(logging.WARNING, logger="aigateway.limits"):
            verdicts = [(await limiter.admit(model, None, 1, 1)).verdict for _ in range(5)]
            store.down = False
            back = await limiter.admit(model, None, 1, 1)
            await limiter.admit(model, None, 1, 1)
        expected = Verdict.STORE_DENIED if deny else Verdict.STORE_ALLOWED
        assert verdicts == [expected] * 5
        assert back.verdict is Verdict.ADMITTED
        messages = [r.getMessage() for r in caplog.records]
        assert len(messages) == 2, messages
        assert "cannot be reached" in messages[0]
        assert ("refusing" if deny else "admitting") in messages[0]
        assert "reachable again" in messages[1]
    finally:
        await limiter.close()


async def test_redis_unreachable_is_an_outage(tmp_path: Path) -> None:
    from tests.e2e.stack import free_port

    limiter = Limiter({}, RedisStore(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        admission = await limiter.admit(limits(Rule("r", Kind.REQUESTS, 5, 60.0)), None, 1, 1)
        assert admission.verdict is Verdict.STORE_ALLOWED
    finally:
        await limiter.close()


# -- Redis with a password, an ACL user and TLS (docs/limits.md) ----------------------------

PASSWORD = "default-pass-7f3a9c"
USER, USER_PASSWORD = "aigateway", "user-pass-41d2e8"
#: A least-privilege ACL user: the gateway's keys only, no dangerous commands.
ACL_USER = ("--user", USER, "on", f">{USER_PASSWORD}", "~aigateway:*", "+@all", "-@dangerous")


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    options = ("--requirepass", PASSWORD, *ACL_USER)
    server = RedisServer(tmp_path_factory.mktemp("locked-redis"), options=options).start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    "credentials",
    [RedisCredentials(password=Secret(PASSWORD)), RedisCredentials(USER, Secret(USER_PASSWORD))],
    ids=["password", "acl-user"],
)
async def test_redis_logs_in_with_a_password_or_an_acl_user(
    locked_redis: RedisServer, credentials: RedisCredentials, bucket: str
) -> None:
    store = RedisStore(locked_redis.url, credentials=credentials)
    try:
        assert (await store.reserve([charge(bucket, 60)])).refused is None
        assert (await store.reserve([charge(bucket, 60)])).refused == 0
    finally:
        await store.close()


@pytest.mark.parametrize(
    "credentials",
    [
        RedisCredentials(),
        RedisCredentials(password=Secret("wrong-pass-0b6e")),
        RedisCredentials(USER, Secret(PASSWORD)),
    ],
    ids=["none", "wrong-password", "wrong-user-password"],
)
async def test_a_refused_login_is_an_outage_that_never_shows_a_password(
    locked_redis: RedisServer, credentials: RedisCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = Limiter(
        {},
        RedisStore(locked_redis.url, credentials=credentials),
        deny_on_store_error=True,
    )
    model = limits(Rule("r", Kind.REQUESTS, 5, 60.0))
    try:
        with caplog.at_level(logging.DEBUG):
            verdicts = [(await limiter.admit(model, None, 1, 1)).verdict for _ in range(3)]
    finally:
        await limiter.close()
    assert verdicts == [Verdict.STORE_DENIED] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    where = f"limits: the store cannot be reached (Redis store 127.0.0.1:{locked_redis.port}"
    if credentials.password is None:
        assert warnings[0].startswith(f"{where} asks for a login: give limits.redis.password")
    else:
        assert warnings[0].startswith(f"{where} refused the gateway ("), warnings[0]
        assert "check limits.redis and the user's ACL" in warnings[0]
    assert "\n" not in warnings[0]
    for secret in (PASSWORD, USER_PASSWORD, "wrong-pass-0b6e"):
        assert secret not in caplog.text


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    """A redis-server that speaks only TLS, its certificate from a CA of the test's own."""
    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls-redis")
    issued = ca.issue_cert("localhost")
    issued.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    issued.private_key_pem.write_to_path(str(folder / "server.key"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    options = (
        "--tls-cert-file",
        str(folder / "server.pem"),
        "--tls-key-file",
        str(folder / "server.key"),
        "--tls-ca-cert-file",
        str(folder / "ca.pem"),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        PASSWORD,
    )
    server = RedisServer(folder / "data", options=options, tls=True).start()
    yield server, ca.cert_pem.bytes().decode()
    server.stop()


async def test_rediss_verifies_the_server_with_the_configured_ca(
    tls_redis: tuple[RedisServer, str], bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, ca_pem = tls_redis
    assert server.url == f"rediss://127.0.0.1:{server.port}/0"
    by_name = f"rediss://localhost:{server.port}/0"  # the name its certificate holds
    store = RedisStore(by_name, credentials=RedisCredentials(None, Secret(PASSWORD), ca_pem))
    try:
        assert (await store.reserve([charge(bucket, 60)])).refused is None
        assert (await store.reserve([charge(bucket, 60)])).refused == 0
    finally:
        await store.close()
    # Refused, as an outage: without the CA (the system's trust store), and by an
    # address the certificate does not name.
    for url, ca in ((by_name, None), (server.url, ca_pem)):
        untrusted = Limiter(
            {}, RedisStore(url, credentials=RedisCredentials(None, Secret(PASSWORD), ca))
        )
        caplog.clear()
        try:
            with caplog.at_level(logging.WARNING, logger="aigateway.limits"):
                model = limits(Rule("r", Kind.REQUESTS, 5, 60.0))
                admission = await untrusted.admit(model, None, 1, 1)
        finally:
            await untrusted.close()
        assert admission.verdict is Verdict.STORE_ALLOWED
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text, caplog.text
        assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (0.0, "0ms"), (1.5, "1.5s"), (6, "6s"), (60, "1m0s"), (3723, "1h2m3s")],
)
def test_durations_are_written_as_openai_does(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# -- in the processor ---------------------------------------------------------------------

LIMITED = parse_config(
    {
        "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:1"}],
        "models": [{"name": "m", "backend": "b"}, {"name": "free", "backend": "b"}],
        "limits": {
            "rules": [
                {
                    "name": "tpm",
                    "key": {"header": "x-tenant"},
                    "models": ["m"],
                    "tokens": {"limit": 1000, "per": "minute"},
                }
            ]
        },
    }
)
REQUEST_HEADERS = Headers(
    [(":method", "POST"), (":path", "/v1/chat/completions"), ("x-tenant", "acme")]
)
USAGE = json.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
).encode()


def chat_body(model: str = "m", max_tokens: int = 100) -> bytes:
    doc = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({**doc, "max_tokens": max_tokens}).encode()


def table_with(store: LimitStore | None = None) -> RoutingTable:
    table = RoutingTable(LIMITED, ResolvedSecrets(LIMITED, Path()))
    if store is not None:
        assert table.limiter is not None
        table.limiter = Limiter(table.limiter.models, store)
    return table


async def answered(processor: ChatCompletionProcessor, body: bytes) -> None:
    await processor.on_request_headers(REQUEST_HEADERS)
    await processor.on_request_body(body, True)
    await processor.on_response_headers(
        Headers([(":status", "200"), ("content-type", "application/json")])
    )
    await processor.on_response_body(USAGE, True)


async def test_a_route_no_rule_covers_reserves_nothing() -> None:
    table = table_with()
    processor = ChatCompletionProcessor(table)
    await answered(processor, chat_body("free"))
    await processor.on_stream_end(Outcome(response_complete=True, status=200))
    assert table.limiter is not None and table.limiter.limits_for("free") is None


async def test_a_refusal_carries_its_rule_headers_and_the_model_labels() -> None:
    table = table_with()
    first = ChatCompletionProcessor(table)
    await first.on_request_headers(REQUEST_HEADERS)
    await first.on_request_body(chat_body(max_tokens=900), True)
    refused = ChatCompletionProcessor(table)
    await refused.on_request_headers(REQUEST_HEADERS)
    with pytest.raises(ImmediateResponse) as reply:
        await refused.on_request_body(chat_body(max_tokens=900), True)
    assert reply.value.status == 429
    assert json.loads(reply.value.body)["error"]["code"] == "rate_limit_exceeded"
    headers = dict(reply.value.headers)
    assert headers["retry-after"] == "60"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert reply.value.dynamic_metadata is not None
    facts = reply.value.dynamic_metadata[METADATA_NAMESPACE]
    assert (facts["model"], facts["backend"], facts["rate_limited"]) == ("m", "b", "tpm")


async def test_an_output_past_any_price_is_refused_as_larger_than_the_budget() -> None:
    # 10**307 tokens at $10 per million is past a double's range: no OverflowError, a 429.
    config = parse_config(
        {
            "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:1"}],
            "models": [{"name": "m", "backend": "b", "price": {"input": 10, "output": 10}}],
            "limits": {"rules": [{"name": "spend", "usd": {"limit": 5, "per": "day"}}]},
        }
    )
    processor = ChatCompletionProcessor(RoutingTable(config, ResolvedSecrets(config, Path())))
    await processor.on_request_headers(REQUEST_HEADERS)
    with pytest.raises(ImmediateResponse) as reply:
        await processor.on_request_body(chat_body(max_tokens=10**307), True)
    assert reply.value.status == 429
    assert "larger than the whole budget" in json.loads(reply.value.body)["error"]["message"]


class SettleSpy:
    """A store whose settlement fails, or waits for ``release``; counts settlements."""

    def __init__(self, *, fail: bool = False) -> None:
        self.inner = LocalStore()
        self.fail = fail
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.settled: list[list[int]] = []

    async def reserve(self, charges: Any) -> Any:
        return await self.inner.reserve(charges)

    async def settle(self, entry: int, charges: Any, amounts: Any) -> None:
        if self.fail:
            raise RuntimeError("the store broke")
        self.entered.set()
        await self.release.wait()
        self.settled.append(list(amounts))
        await self.inner.settle(entry, charges, amounts)

    async def close(self) -> None:
        await self.inner.close()


async def test_settling_never_raises_into_the_request(caplog: pytest.LogCaptureFixture) -> None:
    processor = ChatCompletionProcessor(table_with(SettleSpy(fail=True)))  # type: ignore[arg-type]
    await answered(processor, chat_body())
    await processor.on_stream_end(Outcome(response_complete=True, status=200))
    assert "failed to settle" in caplog.text


async def test_settling_finishes_when_the_stream_is_cancelled_and_runs_once() -> None:
    store = SettleSpy()
    table = table_with(store)  # type: ignore[arg-type]
    processor = ChatCompletionProcessor(table)
    await answered(processor, chat_body())
    ending = asyncio.ensure_future(
        processor.on_stream_end(Outcome(response_complete=True, status=200))
    )
    await store.entered.wait()
    ending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ending
    store.release.set()
    assert table.limiter is not None
    await table.limiter.close()  # waits for the settlements under way
    assert store.settled == [[3 + 4]]
    await processor.on_stream_end(Outcome(response_complete=True, status=200))  # again
    assert store.settled == [[3 + 4]]
