"""``examples/compose_wrappers.py``: ``TenantBudget`` and ``AccessLog`` composed inside the
metrics decorator, served as a script behind the real Envoy."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.processor import Headers, Outcome, Processor, Result
from aigateway.extproc.gateway.app import CHAT_COMPLETIONS, Gateway, ServeOptions
from aigateway.extproc.gateway.chat import ChatCompletionProcessor
from aigateway.extproc.gateway.config import load_config, load_secrets
from aigateway.extproc.gateway.models import MODELS_PATH, ModelsProcessor
from aigateway.extproc.ops.plugins import load_wrap
from aigateway.instrumentation.facts import published
from aigateway.instrumentation.instrumented import InstrumentedProcessor
from tests.e2e.stack import UPSTREAM_KEY, Stack, wait_until
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
        tmp_path_factory, "compose", ["--wrap", f"{EXAMPLES / 'compose_wrappers.py'}:guarded"]
    )


def access_log(stack: Stack, request_id: str) -> dict[str, Any]:
    """The example's access log line for one request (waits for it: it is written when
    the ext_proc stream ends)."""
    found: list[dict[str, Any]] = []

    def written() -> bool:
        for line in stack.procs["serve"].stderr.read_text().splitlines():
            _, marker, doc = line.partition(" aigateway.access: ")
            if marker and json.loads(doc).get("request_id") == request_id:
                found.append(json.loads(doc))
                return True
        return False

    wait_until(f"the access log line of {request_id}", written, timeout=10)
    return found[0]


async def test_wrappers_sit_inside_the_metrics_decorator(tmp_path: Path) -> None:
    compose_wrappers = example_module("compose_wrappers")
    config_path = EXAMPLES / "envoy" / "config.yaml"
    config = load_config(config_path)
    gateway = Gateway(
        config,
        load_secrets(config, config_path),
        ServeOptions(extproc=Address.parse("127.0.0.1:0"), metrics=None),
        wrap=compose_wrappers.guarded,
    )
    try:
        chain = []
        processor: Any = gateway.router.create(CHAT_COMPLETIONS)
        while processor is not None:
            chain.append(type(processor))
            processor = getattr(processor, "inner", None)
        assert chain == [
            InstrumentedProcessor,
            compose_wrappers.AccessLog,
            compose_wrappers.TenantBudget,
            ChatCompletionProcessor,
        ]
        # The models list is not an LLM request: your wrappers only, no metrics wrapper.
        models = gateway.router.create(MODELS_PATH)
        assert type(models) is compose_wrappers.AccessLog
        assert isinstance(models.inner.inner, ModelsProcessor)  # type: ignore[attr-defined]
    finally:
        gateway.telemetry.shutdown()


def test_over_budget_is_refused_counted_once_and_logged(
    stack: Stack, client: openai.OpenAI
) -> None:
    stack.clear_mock_requests()
    before = snapshot(stack.metrics_text())
    request_id = str(uuid.uuid4())
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            max_tokens=5000,  # budgets.yaml: team may ask for 4096
            extra_headers={"x-tenant": "team", "x-request-id": request_id},
        )
    assert refused.value.code == "tenant_budget_exceeded"
    assert refused.value.param == "max_tokens"
    assert stack.mock_requests() == []
    # TenantBudget is inside InstrumentedProcessor: its refusal is one error.
    assert requests_counted(stack, before, 1) == {("unknown", "unknown", "error"): 1.0}
    line = access_log(stack, request_id)
    assert line["status"] == 400
    assert line["outcome"] == "refused"
    assert (line["method"], line["path"], line["tenant"]) == ("POST", CHAT_COMPLETIONS, "team")
    assert (line["backend"], line["model"]) == ("-", "-")


def test_within_budget_succeeds_and_logs_backend_model_tokens_without_secrets(
    stack: Stack, client: openai.OpenAI
) -> None:
    before = snapshot(stack.metrics_text())
    request_id = str(uuid.uuid4())
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=50,
        extra_headers={
            "x-tenant": "free",
            "x-mock-output-tokens": "6",
            "x-request-id": request_id,
        },
        extra_query={"api-key": "query-secret"},  # the access log drops query strings
    )
    assert reply.parse().usage.completion_tokens == 6  # type: ignore[union-attr]
    assert requests_counted(stack, before, 1) == {("mock-openai", "gpt-4o-mini", "success"): 1.0}
    line = access_log(stack, request_id)
    assert line["status"] == 200
    assert line["outcome"] == "ok"
    assert (line["backend"], line["model"]) == ("mock-openai", "gpt-4o-mini")
    assert line["path"] == CHAT_COMPLETIONS
    assert line["output_tokens"] == 6
    assert line["input_tokens"] == 2  # the mock counts the words of the messages
    assert isinstance(line["duration_ms"], float)
    logged = stack.procs["serve"].stderr.read_text()
    for secret in (UPSTREAM_KEY, "client-own-key", "query-secret"):
        assert secret not in logged


def test_paths_other_than_chat_pass_through_the_budget(client: openai.OpenAI) -> None:
    # No x-tenant: TenantBudget only guards chat completions.
    assert "gpt-4o-mini" in {m.id for m in client.models.list()}


async def test_the_access_log_loads_with_serve_wrap_and_logs_a_broken_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `aigateway serve --wrap examples/access_log.py:AccessLog` loads it this way.
    access_log = load_wrap(f"{EXAMPLES / 'access_log.py'}:AccessLog")

    class Broken(Processor):
        """Routes (and says so in its facts), then reports an upstream 2xx it could not use
        (the `error` fact)."""

        async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
            return Result(
                set_headers=(
                    ("x-ai-gateway-model", "m"),
                    ("x-ai-gateway-backend", "b"),
                    ("authorization", f"Bearer {UPSTREAM_KEY}"),
                ),
                dynamic_metadata=published({"backend": "b", "model": "m"}),
            )

        async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
            return Result(dynamic_metadata=published({"error": "upstream_bad_json"}))

    processor = access_log(Broken())
    with caplog.at_level("INFO", logger="aigateway.access"):
        await processor.on_request_headers(
            Headers(
                [
                    (":method", "POST"),
                    (":path", "/v1/chat/completions?api-key=query-secret"),
                    ("x-request-id", "r-1"),
                    ("authorization", "Bearer client-own-key"),
                ]
            )
        )
        await processor.on_request_body(b"{}", True)
        await processor.on_response_headers(Headers([(":status", "200")]))
        await processor.on_response_body(b"not json", True)
        await processor.on_stream_end(Outcome(response_complete=True, status=200))
    (record,) = caplog.records
    line = json.loads(record.getMessage())
    assert line["request_id"] == "r-1"
    assert (line["path"], line["backend"], line["model"]) == ("/v1/chat/completions", "b", "m")
    # A 200 the processor reported as broken is what the metrics count: an error.
    assert (line["status"], line["outcome"], line["error"]) == (
        200,
        "upstream_error",
        "upstream_bad_json",
    )
    for secret in (UPSTREAM_KEY, "client-own-key", "query-secret"):
        assert secret not in record.getMessage()
