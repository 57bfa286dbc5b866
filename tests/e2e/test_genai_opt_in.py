"""``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` end to end: a streamed
request through the real Envoy adds the GenAI client chunk timings to ``/metrics``
(passing ``promtool check metrics``), from the same clock as the server-side families;
a non-streamed one adds none (docs/metrics.md, "GenAI semantic conventions")."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.stack import Stack, default_config, running
from tests.e2e.test_chat_openai import MESSAGES
from tests.e2e.test_metrics import after_requests, delta, snapshot

TTFC = "gen_ai_client_operation_time_to_first_chunk_seconds"
TPOC = "gen_ai_client_operation_time_per_output_chunk_seconds"
TTFT = "gen_ai_server_time_to_first_token_seconds"
TOKENS = 4


def config(mock_port: int) -> dict[str, Any]:
    doc = default_config(mock_port)
    doc["metrics"] = {"schema": "both"}
    return doc


@pytest.fixture(scope="module")
def opted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("genai-opt-in"), config_factory=config)
    stack.env["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
    with running(stack) as s:
        yield s


def test_a_stream_records_the_client_chunk_timings(opted: Stack) -> None:
    client = openai.OpenAI(base_url=f"{opted.base_url}/v1", api_key="k", max_retries=0)
    before = snapshot(opted.metrics_text())
    knobs = {"x-mock-output-tokens": str(TOKENS), "x-mock-itl-ms": "20"}
    chunks = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=knobs,
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    after = after_requests(opted, before, ("mock-openai", "gpt-4o-mini"), 2)

    def grown(name: str) -> dict[tuple[str, ...], float]:
        return delta(before, after, name)

    # One time to first chunk, the server-side time to first token's value.
    ((labels, count),) = grown(f"{TTFC}_count").items()
    assert count == 1
    assert dict(zip(("operation", "provider", "model", "response"), labels, strict=True)) == {
        "operation": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "response": "gpt-4o-mini",
    }
    assert grown(f"{TTFC}_sum") == pytest.approx(grown(f"{TTFT}_sum"))
    # One gap per chunk after the first (the mock's 20 ms between tokens splits them);
    # the gaps add up to the time from the first chunk to the last, which the
    # per-token latency spreads over the tokens after the first.
    (gaps,) = grown(f"{TPOC}_count").values()
    assert gaps >= 1
    (spread,) = grown("aigateway_inter_token_latency_seconds_sum").values()
    assert list(grown(f"{TPOC}_sum").values()) == [pytest.approx(spread * (TOKENS - 1))]

    text = opted.metrics_text()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {TTFC, TPOC} <= families
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test` (Debian package prometheus)"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""
