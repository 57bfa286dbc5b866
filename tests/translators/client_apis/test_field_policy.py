"""The field policy: each client API's fields translated, ignored or refused, one table in
code and the same table in docs/client-apis.md."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

from aigateway.translators.backends.gemini import GeminiChatTranslator
from aigateway.translators.client_apis.field_policy import POLICIES, FieldPolicy, Treatment
from aigateway.translators.client_apis.messages_request import (
    MessagesOptions,
    read_messages_request,
)
from aigateway.translators.client_apis.responses_request import read_responses_request
from aigateway.translators.contract import TranslationError

DOCS = Path(__file__).parents[3] / "docs" / "client-apis.md"


def responses(**payload: Any) -> dict[str, Any]:
    return read_responses_request({"model": "m", "input": "x", **payload}).chat


def messages(**payload: Any) -> dict[str, Any]:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    return read_messages_request({**body, **payload}, MessagesOptions()).chat


def test_the_docs_table_is_the_code_s_table() -> None:
    section = DOCS.read_text().split("### Field policy", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    documented = {}
    for row in rows:
        where, *groups = (cell.strip() for cell in row.strip("|").split("|"))
        documented[where] = [frozenset(re.findall(r"`([^`]+)`", g)) for g in groups]
    assert documented == {p.where: [p.translated, p.ignored, p.refused] for p in POLICIES}


def test_codex_s_metadata_hints_and_unknown_fields_are_left_out_with_a_debug_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aigateway.translators"):
        out = responses(
            client_metadata={"turn_id": "t"},
            prompt_cache_key="k",
            store=False,
            safety_identifier="s",
            text={"verbosity": "low"},
            frobnicate=1,
        )
    assert out == {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert [r.getMessage() for r in caplog.records] == [
        "ignored unknown request field 'frobnicate' in a Responses request"
    ]


def test_a_namespace_of_function_tools_is_flattened_to_codex_s_flat_names() -> None:
    fn = {"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}}
    out = responses(
        tools=[
            {
                "type": "namespace",
                "name": "multi_agent_v1",
                "description": "Sub-agents.",
                "tools": [fn, {**fn, "name": "w"}],
            }
        ]
    )
    assert [t["function"]["name"] for t in out["tools"]] == [
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1__w",
    ]


def test_where_meaning_lives_unknown_kinds_are_still_refused() -> None:
    with pytest.raises(TranslationError) as caught:
        responses(tools=[{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}])
    assert caught.value.param == "tools[0].tools[0].type"
    with pytest.raises(TranslationError) as caught:
        responses(tools=[{"type": "custom", "name": "c", "format": {"type": "hologram"}}])
    assert caught.value.param == "tools[0].format.type"
    with pytest.raises(TranslationError) as caught:
        responses(input=[{"role": "user", "content": [{"type": "input_hologram"}]}])
    assert caught.value.param == "input[0].content[0].type"


def test_the_ai_sdk_s_eager_input_streaming_is_ignored_and_refused_tool_fields_are_not() -> None:
    tool = {"name": "t", "input_schema": {"type": "object"}, "eager_input_streaming": True}
    out = messages(tools=[tool], inference_geo="us")
    assert out["tools"] == [
        {"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}
    ]
    with pytest.raises(TranslationError) as caught:
        messages(tools=[{**tool, "allowed_callers": ["code_execution"]}])
    assert caught.value.param == "tools[0].allowed_callers"


@pytest.mark.parametrize(
    ("field", "value"),
    [("top_logprobs", 2), ("logit_bias", {"1": 2}), ("functions", [{"name": "f"}]), ("n", 2)],
)
def test_chat_fields_that_change_the_answer_are_refused_on_a_pivot_backend(
    field: str, value: Any
) -> None:
    body = {"model": "g", "messages": [{"role": "user", "content": "x"}], field: value}
    with pytest.raises(TranslationError) as caught:
        GeminiChatTranslator("/v1beta/models/g").request(body, b"")
    assert caught.value.param == field


def test_chat_hints_and_unknown_fields_are_left_out_on_a_pivot_backend() -> None:
    body = {
        "model": "g",
        "messages": [{"role": "user", "content": "x"}],
        "prompt_cache_retention": "24h",
        "verbosity": "low",
        "some_new_hint": True,
    }
    upstream = GeminiChatTranslator("/v1beta/models/g").request(body, b"")
    assert b"24h" not in upstream.body and b"some_new_hint" not in upstream.body


def test_a_field_is_in_one_group_only() -> None:
    with pytest.raises(AssertionError):
        FieldPolicy("x", frozenset({"a"}), frozenset({"a"}), frozenset())
    assert POLICIES[0].treatment("user") is Treatment.IGNORED
    assert POLICIES[0].treatment("never-seen") is None
