"""``metrics.schema: both``, ``labels_from_headers`` and prices end to end: a fixed mix of
requests through the real Envoy, then ``/metrics`` must show both sets of families from
the same requests, with the tenant label and exact costs, pass ``promtool check
metrics``; and Envoy's access log must show each request's timings."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, default_config, running, wait_until
from tests.e2e.test_accounting_matrix import access_log
from tests.e2e.test_chat_openai import MESSAGES, PROMPT_WORDS

P = PROMPT_WORDS
PRICES = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.6, "cached_input": 0.075},
    "claude-sonnet": {"input": 3, "output": 15, "cached_input": 0.3, "cache_write": 3.75},
}


def config(mock_port: int) -> dict[str, Any]:
    doc = default_config(mock_port)
    for model in doc["models"]:
        if model["name"] in PRICES:
            model["price"] = PRICES[model["name"]]
    doc["metrics"] = {
        "schema": "both",
        "labels_from_headers": [
            {"header": "x-tenant-id", "label": "tenant", "values": ["acme", "globex"]}
        ],
    }
    return doc


@pytest.fixture(scope="module")
def tstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(Stack(tmp_path_factory.mktemp("telemetry"), config_factory=config)) as s:
        yield s


Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # An empty label is no label (the exporter pads a family's series with the
            # labels any of them has: error_type="" on successes).
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if v))
            out[(sample.name, labels)] = sample.value
    return out


def grown(before: Series, after: Series, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """How much ``name`` grew, summed by the values of ``labels`` ("" when absent)."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (sample, pairs), value in after.items():
        if sample == name and value != before.get((sample, pairs), 0.0):
            found = dict(pairs)
            out[tuple(found.get(label, "") for label in labels)] += value - before.get(
                (sample, pairs), 0.0
            )
    return dict(out)


def usd(*terms: tuple[int, float]) -> float:
    """tokens x USD per million, summed exactly, rounded once (as the gateway does)."""
    total = sum((Decimal(n) * Decimal(repr(rate)) for n, rate in terms), Decimal())
    return float(total / Decimal(1_000_000))


def test_both_schemas_tenants_and_costs_from_one_mix(tstack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{tstack.base_url}/v1", api_key="k", max_retries=0)
    ids: dict[str, str] = {}

    def headers(name: str, tenant: str | None, **knobs: str) -> dict[str, str]:
        ids[name] = str(uuid.uuid4())
        out = {"x-request-id": ids[name], **knobs}
        if tenant is not None:
            out["x-tenant-id"] = tenant
        return out

    before = samples(tstack.metrics_text())
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers=headers("plain", "acme", **{"x-mock-output-tokens": "4"}),
    )
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers=headers(
            "cached", "acme", **{"x-mock-output-tokens": "5", "x-mock-cached-tokens": "2"}
        ),
    )
    list(
        client.chat.completions.create(
            model="phi4",
            messages=MESSAGES,
            stream=True,
            extra_headers=headers("stream", "globex", **{"x-mock-output-tokens": "7"}),
        )
    )
    list(
        client.chat.completions.create(
            model="claude-sonnet",
            messages=MESSAGES,
            stream=True,
            extra_headers=headers(
                "claude",
                "initech",
                **{"x-mock-output-tokens": "3", "x-mock-cache-write-tokens": "1"},
            ),
        )
    )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=MESSAGES, extra_headers=headers("unknown", None)
        )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers=headers("failed", "acme", **{"x-mock-status": "500"}),
        )

    after: Series = {}

    def all_recorded() -> bool:
        nonlocal after
        after = samples(tstack.metrics_text())
        return sum(grown(before, after, "aigateway_requests_total").values()) >= 6

    wait_until("the mix to be recorded", all_recorded)

    assert grown(before, after, "aigateway_requests_total", "model", "status", "tenant") == {
        ("gpt-4o-mini", "success", "acme"): 2,
        ("phi4", "success", "globex"): 1,
        ("claude-sonnet", "success", "other"): 1,
        ("unknown", "error", "none"): 1,
        ("gpt-4o-mini", "error", "acme"): 1,
    }
    # The GenAI durations: the same requests, error.type on the failures only.
    assert grown(
        before,
        after,
        "gen_ai_server_request_duration_seconds_count",
        "gen_ai_request_model",
        "gen_ai_provider_name",
        "gen_ai_response_model",
        "error_type",
        "tenant",
    ) == {
        ("gpt-4o-mini", "openai", "gpt-4o-mini", "", "acme"): 2,
        ("phi4", "openai", "phi4:latest", "", "globex"): 1,
        ("claude-sonnet", "anthropic", "claude-3-5-sonnet", "", "other"): 1,
        ("unknown", "unknown", "", "model_not_found", "none"): 1,
        ("gpt-4o-mini", "openai", "", "upstream_http_500", "acme"): 1,
    }
    # Tokens: the same counts in both sets.
    assert grown(before, after, "aigateway_model_tokens_total", "model", "type") == {
        ("gpt-4o-mini", "prompt"): 2 * P,
        ("gpt-4o-mini", "completion"): 9,
        ("gpt-4o-mini", "total"): 2 * P + 9,
        ("gpt-4o-mini", "cached_prompt"): 2,
        ("phi4", "prompt"): P,
        ("phi4", "completion"): 7,
        ("phi4", "total"): P + 7,
        ("claude-sonnet", "prompt"): P,
        ("claude-sonnet", "completion"): 3,
        ("claude-sonnet", "total"): P + 3,
        ("claude-sonnet", "cache_write_prompt"): 1,
    }
    assert grown(
        before, after, "gen_ai_client_token_usage_sum", "gen_ai_request_model", "gen_ai_token_type"
    ) == {
        ("gpt-4o-mini", "input"): 2 * P,
        ("gpt-4o-mini", "output"): 9,
        ("phi4", "input"): P,
        ("phi4", "output"): 7,
        ("claude-sonnet", "input"): P,
        ("claude-sonnet", "output"): 3,
    }
    # Streams: first token and time per output token in both sets.
    for name in (
        "aigateway_first_token_latency_seconds_count",
        "aigateway_inter_token_latency_seconds_count",
    ):
        assert grown(before, after, name, "model") == {("phi4",): 1, ("claude-sonnet",): 1}
    for name in (
        "gen_ai_server_time_to_first_token_seconds_count",
        "gen_ai_server_time_per_output_token_seconds_count",
    ):
        assert grown(before, after, name, "gen_ai_request_model") == {
            ("phi4",): 1,
            ("claude-sonnet",): 1,
        }
    # Costs, exact: only priced models; cached prompt tokens at the cached rate, cache
    # writes at the cache-write rate, the rest of the prompt at the input rate.
    assert grown(before, after, "aigateway_model_cost_usd_total", "model", "tenant") == {
        ("gpt-4o-mini", "acme"): usd((2 * P - 2, 0.15), (2, 0.075), (9, 0.6)),
        ("claude-sonnet", "other"): usd((P - 1, 3), (1, 3.75), (3, 15)),
    }

    # Envoy's access log shows each request's timings (milliseconds).
    def logged() -> bool:
        return all(access_log(tstack, rid) is not None for rid in ids.values())

    wait_until("every access-log line", logged)
    for name, rid in ids.items():
        line = access_log(tstack, rid)
        assert line is not None
        assert isinstance(line["total_latency_ms"], int | float), name
        streamed = name in ("stream", "claude")
        assert isinstance(line["first_token_latency_ms"], int | float) is streamed, name
        assert isinstance(line["inter_token_latency_ms"], int | float) is streamed, name
        assert line["total_latency_ms"] >= (line["first_token_latency_ms"] or 0), name


def test_the_exposition_passes_promtool_with_exactly_these_families(tstack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{tstack.base_url}/v1", api_key="k", max_retries=0)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    text = tstack.metrics_text()
    assert {f.name for f in text_string_to_metric_families(text)} == {
        "aigateway_requests",
        "aigateway_model_tokens",
        "aigateway_model_cost_usd",
        "aigateway_first_token_latency_seconds",
        "aigateway_inter_token_latency_seconds",
        "aigateway_total_latency_seconds",
        "gen_ai_client_token_usage",
        "gen_ai_server_request_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_per_output_token_seconds",
    }
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (Debian package prometheus)"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
