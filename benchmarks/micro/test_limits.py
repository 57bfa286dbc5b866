"""What limits cost per request (docs/limits.md): a whole
non-streamed request through ``Process`` on a route without rules, with a config whose
rules cover another model only, and with two rules (tokens per tenant, requests) in the
``memory`` store and in a real Redis; then one reservation and its settlement alone."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import GatewayConfig, ResolvedSecrets, parse_config
from aigateway.extproc.gateway.limits import Charge, LimitStore
from aigateway.extproc.gateway.limits.local_store import LocalStore
from aigateway.extproc.gateway.limits.redis_store import RedisStore
from aigateway.extproc.gateway.limits.sqlite_store import (
    STORE_FILE_ENV,
    SqliteStore,
    create_store_file,
)
from benchmarks.micro.test_server import CONFIG, REQUEST, _messages
from tests.e2e.stack import RedisServer

RULES = [
    {
        "name": "tenant-tokens",
        "key": {"header": "x-tenant-id"},
        "tokens": {"limit": 10**12, "per": "hour"},
    },
    {"name": "rpm", "requests": {"limit": 10**12, "per": "minute"}},
]


def limited(store: str, models: list[str] | None = None) -> GatewayConfig:
    doc = CONFIG.model_dump(by_alias=True, exclude_none=True)
    doc["models"].append({"name": "other-model", "backend": "static"})
    rules = [{**r, "models": models} if models else r for r in RULES]
    doc["limits"] = {"store": store, "rules": rules}
    return parse_config(doc)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        server = RedisServer(Path(folder)).start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.mark.parametrize(
    "variant", ["no-rules", "rules-elsewhere", "memory", "memory-workers", "redis"]
)
def test_limited_request(
    benchmark: Any, loop: asyncio.AbstractEventLoop, variant: str, request: pytest.FixtureRequest
) -> None:
    """A whole non-streamed request: ``no-rules`` is today's route; ``rules-elsewhere``
    must cost the same (a dict lookup); ``memory`` (one process), ``memory-workers``
    (the SQLite file of ``serve --workers``) and ``redis`` reserve in two rules and
    settle to the usage (the settlement runs in the stream's end, measured too)."""
    if variant == "no-rules":
        config = CONFIG
    elif variant == "rules-elsewhere":
        config = limited("memory", ["other-model"])
    elif variant == "redis":
        config = limited(request.getfixturevalue("redis_url"))
    else:
        config = limited("memory")
    with pytest.MonkeyPatch.context() as env:
        if variant == "memory-workers":
            folder = request.getfixturevalue("tmp_path")
            create_store_file(str(folder / "limits.sqlite3"))
            env.setenv(STORE_FILE_ENV, str(folder / "limits.sqlite3"))
        table = RoutingTable(config, ResolvedSecrets(config, Path()))
    service = ExternalProcessorServicer(build_router(table))
    headers = [*REQUEST]

    def one_request() -> None:
        context = _messages(*headers)
        loop.run_until_complete(service.Process(None, context))
        assert context.outbox.qsize() == len(REQUEST)

    try:
        benchmark(one_request)
    finally:
        if table.limiter is not None:
            loop.run_until_complete(table.limiter.close())


@pytest.mark.parametrize("store_name", ["memory", "memory-workers", "redis"])
def test_reserve_and_settle(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    store_name: str,
    request: pytest.FixtureRequest,
) -> None:
    """One reservation in two buckets and its settlement, nothing else."""
    store: LimitStore
    if store_name == "memory":
        store = LocalStore()
    elif store_name == "memory-workers":
        store = SqliteStore()
    else:
        store = RedisStore(request.getfixturevalue("redis_url"))
    charges = [Charge("tenant-tokens/acme", 10**12, 3600.0, 500), Charge("rpm", 10**12, 60.0, 1)]

    async def once() -> None:
        decision = await store.reserve(charges)
        await store.settle(decision.entry, charges, [20, 1])

    try:
        benchmark(lambda: loop.run_until_complete(once()))
    finally:
        loop.run_until_complete(store.close())
