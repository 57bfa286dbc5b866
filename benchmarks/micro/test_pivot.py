"""Chat completions, and the Messages and Responses APIs through the chat pivot, to
Bedrock, per stream of
``len(BEDROCK_FRAMES)`` events (benchmarks/NOTES.md divides by it). With
``BENCH_BASELINE=<rev>`` the same stream also runs through that revision's translators,
in the same process and run."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from aigateway.extproc.gateway.routed import parse_json_body
from benchmarks.micro import baseline
from benchmarks.micro.streams import (
    MESSAGES,
    TOKENS,
    bedrock_stream_frames,
    chat_request,
    compact,
)

BEDROCK_FRAMES = bedrock_stream_frames()
REQUESTS = {
    "chat_completions": chat_request(stream=True, stream_options={"include_usage": True}),
    "messages": compact(
        {"model": "claude", "max_tokens": 256, "messages": MESSAGES[1:], "stream": True}
    ),
    "responses": compact({"model": "claude", "input": MESSAGES[1]["content"], "stream": True}),
}
REVISIONS = ["current", *(["baseline"] if baseline.revision() else [])]


def matrix(revision: str) -> Any:
    if revision == "current":
        return importlib.import_module("aigateway.translators.matrix")
    rev = baseline.revision()
    assert rev is not None
    baseline.load(rev)
    return importlib.import_module(baseline.PACKAGE + ".matrix")


@pytest.mark.parametrize("revision", REVISIONS)
@pytest.mark.parametrize("api", list(REQUESTS))
def test_stream_to_bedrock(benchmark: Any, api: str, revision: str) -> None:
    """ConverseStream frames -> the client API's events, the whole stream."""
    m = matrix(revision)
    translators = m.route_translators(
        m.BackendOptions(schema="aws-bedrock", upstream_model="anthropic.claude-3-5-sonnet")
    )
    body = REQUESTS[api]

    def translate() -> Any:
        translator = translators.translator(api, None)
        translator.request(parse_json_body(body), body)
        translator.response_headers(200, "application/vnd.amazon.eventstream")
        outs = [
            translator.response_body(frame, i == len(BEDROCK_FRAMES) - 1)
            for i, frame in enumerate(BEDROCK_FRAMES)
        ]
        return outs

    outs = benchmark(translate)
    assert outs[-1].usage.output_tokens == TOKENS and outs[-1].error is None
    assert outs[-1].complete
    assert sum(len(out.body) for out in outs) > TOKENS * 50  # every token was written
