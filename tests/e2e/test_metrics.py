"""The metrics contract end to end: a fixed mix of requests through real Envoy, then
``/metrics`` must match it exactly and pass ``promtool check metrics``."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.contract import BUCKETS, FAMILIES
from tests.e2e.stack import Stack, running, wait_until
from tests.e2e.test_chat_openai import MESSAGES, PROMPT_WORDS, post

Key = tuple[str, tuple[tuple[str, str], ...]]


def snapshot(text: str) -> dict[Key, float]:
    """Every sample as (name, sorted labels) -> value."""
    out: dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def delta(
    before: dict[Key, float],
    after: dict[Key, float],
    name: str,
    only: tuple[str, str] | None = None,
) -> dict[tuple[str, ...], float]:
    """Per label set (le excluded), how much ``name`` grew. With ``only``, just the
    series of that (backend, model): on a shared stack, an earlier test's request that
    never completed (a client gone mid-stream) is recorded only when its ext_proc stream
    ends, which can be just after its client is done."""
    grown: dict[tuple[str, ...], float] = defaultdict(float)
    for (sample, labels), value in after.items():
        if sample != name:
            continue
        change = value - before.get((sample, labels), 0.0)
        key = tuple(v for k, v in labels if k != "le")
        if change and (only is None or key[:2] == only):
            grown[key] += change
    return dict(grown)


def after_requests(
    stack: Stack, before: dict[Key, float], only: tuple[str, str], count: int
) -> dict[Key, float]:
    """The metrics once ``count`` requests of ``only`` (backend, model) are counted."""
    after: dict[Key, float] = {}

    def recorded() -> bool:
        nonlocal after
        after = snapshot(stack.metrics_text())
        return sum(delta(before, after, "aigateway_requests_total", only).values()) >= count

    wait_until(f"{count} requests to be recorded", recorded)
    return after


def tokens_by_type(
    before: dict[Key, float], after: dict[Key, float], only: tuple[str, str]
) -> dict[str, float]:
    """The tokens of ``only`` (backend, model) counted in between, by token type."""
    return {
        k[2]: v for k, v in delta(before, after, "aigateway_model_tokens_total", only).items() if v
    }


def run_mix(stack: Stack, client: openai.OpenAI) -> None:
    for tokens in (4, 5, 6):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"x-mock-output-tokens": str(tokens)},
        )
    list(
        client.chat.completions.create(
            model="phi4",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-mock-output-tokens": "7"},
        )
    )
    list(
        client.chat.completions.create(
            model="phi4",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-output-tokens": "3"},
        )
    )
    assert post(stack, "/v1/chat/completions", b"{bad json")[0] == 400
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="unknown-model", messages=MESSAGES)
    for model, status in (("gpt-4o-mini", 500), ("phi4", 429)):
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(
                model=model, messages=MESSAGES, extra_headers={"x-mock-status": str(status)}
            )
        assert err.value.status_code == status
    # A client that leaves mid-stream, after its first chunk.
    with (
        httpx.Client(base_url=stack.base_url, timeout=10) as raw,
        raw.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "phi4", "messages": MESSAGES, "stream": True},
            headers={"x-mock-output-tokens": "50", "x-mock-itl-ms": "100"},
        ) as response,
    ):
        assert response.status_code == 200
        next(response.iter_raw())


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: an exact comparison must see only its own requests."""
    with running(Stack(tmp_path_factory.mktemp("metrics"))) as s:
        yield s


def test_metrics_match_the_mix_exactly(fresh: Stack) -> None:
    stack = fresh
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
    before = snapshot(stack.metrics_text())
    run_mix(stack, client)
    expected_requests = {
        ("mock-openai", "gpt-4o-mini", "success"): 3,
        ("mock-openai", "phi4", "success"): 2,
        ("unknown", "unknown", "error"): 2,
        ("mock-openai", "gpt-4o-mini", "error"): 1,
        ("mock-openai", "phi4", "error"): 2,
    }
    after: dict[Key, float] = {}

    def all_recorded() -> bool:
        nonlocal after
        after = snapshot(stack.metrics_text())
        return sum(delta(before, after, "aigateway_requests_total").values()) >= 10

    wait_until("every request of the mix to be recorded", all_recorded)
    requests = delta(before, after, "aigateway_requests_total")
    assert {(b, m, s): v for (b, m, s), v in requests.items()} == expected_requests

    tokens = delta(before, after, "aigateway_model_tokens_total")
    assert tokens == {
        ("mock-openai", "gpt-4o-mini", "prompt"): 3 * PROMPT_WORDS,
        ("mock-openai", "gpt-4o-mini", "completion"): 4 + 5 + 6,
        ("mock-openai", "gpt-4o-mini", "total"): 3 * PROMPT_WORDS + 15,
        ("mock-openai", "phi4", "prompt"): 2 * PROMPT_WORDS,
        ("mock-openai", "phi4", "completion"): 7 + 3,
        ("mock-openai", "phi4", "total"): 2 * PROMPT_WORDS + 10,
    }

    total = delta(before, after, "aigateway_total_latency_seconds_count")
    assert total == expected_requests
    first = delta(before, after, "aigateway_first_token_latency_seconds_count")
    assert first == {("mock-openai", "phi4"): 3}  # two complete streams + the one that left
    inter = delta(before, after, "aigateway_inter_token_latency_seconds_count")
    assert inter == {("mock-openai", "phi4"): 2}


def test_exposition_has_exactly_the_five_families_and_passes_promtool(
    stack: Stack, client: openai.OpenAI
) -> None:
    # A streamed request of its own: every family then has samples, whatever ran before.
    before = snapshot(stack.metrics_text())
    list(client.chat.completions.create(model="phi4", messages=MESSAGES, stream=True))
    after_requests(stack, before, ("mock-openai", "phi4"), 1)
    text = stack.metrics_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == set(FAMILIES)
    for name, (kind, help_text, labels) in FAMILIES.items():
        family = families[name]
        assert (family.type, family.documentation) == (kind, help_text)
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, sample
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (Debian package prometheus)"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_histogram_buckets_are_the_contract(stack: Stack, client: openai.OpenAI) -> None:
    list(client.chat.completions.create(model="phi4", messages=MESSAGES, stream=True))
    text = stack.metrics_text()
    bounds: dict[str, list[str]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("model") == "phi4":
                le = sample.labels["le"]
                key = family.name
                if le not in bounds[key]:
                    bounds[key].append(le)
    as_floats: dict[str, Any] = {k: [float(b) for b in v if b != "+Inf"] for k, v in bounds.items()}
    assert as_floats == BUCKETS
