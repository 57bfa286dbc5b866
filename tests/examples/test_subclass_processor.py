"""``examples/subclass_processor.py`` served as a script behind the real Envoy, with the
mock backend and the official ``openai`` client: refusals are OpenAI 4xx errors that
never reach a backend and are counted once as errors; allowed requests work."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from aigateway.extproc.gateway.app import CHAT_COMPLETIONS, build_router
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import load_config, load_secrets
from tests.e2e.stack import UPSTREAM_KEY, Stack
from tests.e2e.test_metrics import snapshot
from tests.examples.conftest import (
    EXAMPLES,
    example_module,
    requests_counted,
    running_example,
)

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_example(
        tmp_path_factory, "subclass", ["--routes", f"{EXAMPLES / 'subclass_processor.py'}:routes"]
    )


def test_over_budget_is_a_400_that_never_reaches_the_backend_and_counts_once(
    stack: Stack, client: openai.OpenAI
) -> None:
    stack.clear_mock_requests()
    before = snapshot(stack.metrics_text())
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=1000,  # budgets.yaml: free may ask for 256
            extra_headers={"x-tenant": "free"},
        )
    assert refused.value.status_code == 400
    assert refused.value.code == "tenant_budget_exceeded"
    assert refused.value.param == "max_tokens"
    assert refused.value.type == "invalid_request_error"
    assert "at most 256" in refused.value.message
    assert stack.mock_requests() == []
    # Refused once its model is known: the metrics decorator around the subclass counts
    # it as an error of that model, exactly once.
    assert requests_counted(stack, before, 1) == {("mock-openai", "gpt-4o-mini", "error"): 1.0}


def test_no_max_tokens_is_unbounded_and_refused_for_a_capped_tenant(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-tenant": "free"},
        )
    assert refused.value.code == "tenant_budget_exceeded"
    assert refused.value.param == "max_completion_tokens"


def test_n_choices_multiply_what_a_request_asks_for(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_completion_tokens=200,
            n=2,  # 400 tokens in all, over free's 256
            extra_headers={"x-tenant": "free"},
        )
    assert refused.value.param == "max_completion_tokens"
    assert "up to 400" in refused.value.message


def test_unknown_and_missing_tenants_are_403(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as unknown:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=10,
            extra_headers={"x-tenant": "mallory"},
        )
    assert unknown.value.code == "unknown_tenant"
    with pytest.raises(openai.PermissionDeniedError) as missing:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=10,
        )
    assert missing.value.code == "missing_tenant"


def test_within_budget_goes_through_the_parent_processor(
    stack: Stack, client: openai.OpenAI
) -> None:
    stack.clear_mock_requests()
    before = snapshot(stack.metrics_text())
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=100,
        extra_headers={"x-tenant": "free", "x-mock-output-tokens": "5"},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 5
    content = reply.choices[0].message.content
    assert content is not None and len(content.split()) == 5
    (seen,) = stack.mock_requests()
    # The parent did its job (routing header, backend key); our tenant header stayed home.
    assert seen["headers"]["x-ai-gateway-backend"] == "mock-openai"
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-tenant" not in seen["headers"]
    assert json.loads(seen["body"])["max_tokens"] == 100
    assert requests_counted(stack, before, 1) == {("mock-openai", "gpt-4o-mini", "success"): 1.0}


def test_unlimited_tenant_may_stream_without_max_tokens(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-tenant": "batch", "x-mock-output-tokens": "4"},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 4


def test_the_example_router_is_the_stock_one_but_for_chat() -> None:
    subclass = example_module("subclass_processor")
    budgets = example_module("tenant_budget").Budgets.load(EXAMPLES / "budgets.yaml")
    config_path = EXAMPLES / "envoy" / "config.yaml"
    config = load_config(config_path)
    table = RoutingTable(config, load_secrets(config, config_path))
    stock = build_router(table)
    mine = build_router(table, routes=subclass.budgeted_routes(budgets))
    assert mine.paths == stock.paths
    for path in [*stock.paths, "/v1/models/gpt-4o-mini", "/v1/nothing-here"]:
        theirs, ours = type(stock.create(path)), type(mine.create(path))
        if path == CHAT_COMPLETIONS:
            assert ours is subclass.BudgetedChatProcessor and issubclass(ours, theirs)
        else:
            assert ours is theirs, path
