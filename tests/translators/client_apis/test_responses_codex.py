"""Codex CLI's default-model requests on the chat pivot: its tools come in an
``additional_tools`` input item (namespaces of function tools and the custom tool
``exec``), its reasoning effort in a ``configuration_update`` item, and the calls of
those tools go back as Codex finds them: by namespace and name, ``exec`` as a
``custom_tool_call`` (docs/client-apis.md, "OpenAI Responses API"). The requests are the
recorded ones of ``tests/e2e/data/codex_requests.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.responses import Response

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator
from aigateway.translators.backends.bedrock import BedrockConverseTranslator
from aigateway.translators.backends.gemini import GeminiChatTranslator
from aigateway.translators.client_apis.pivot import PivotTranslator
from aigateway.translators.client_apis.responses import ResponsesApi
from aigateway.translators.client_apis.responses_request import read_responses_request
from aigateway.translators.contract import TranslationError
from tests.translators.anthropic_wire import tool_use
from tests.translators.client_apis.test_responses import anthropic_sse, events_of

RECORDED = {
    r["name"]: r["body"]
    for r in json.loads(
        (Path(__file__).parents[2] / "e2e" / "data" / "codex_requests.json").read_text()
    )["requests"]
}
FIRST, AFTER_EXEC, AFTER_SLEEP = (
    RECORDED["default-model-first-turn"],
    RECORDED["default-model-after-exec-call"],
    RECORDED["default-model-after-namespaced-call"],
)
#: The chat functions of Codex's default tools: ``functions`` is the namespace of plain
#: tools; the others are named ``namespace__name``.
CHAT_TOOLS = [
    "exec",
    "wait",
    "request_user_input",
    "request_user_input_async",
    "send_message_to_user_async",
    "clock__sleep",
    "collaboration__followup_task",
    "collaboration__interrupt_agent",
    "collaboration__list_agents",
    "collaboration__send_message",
    "collaboration__spawn_agent",
    "collaboration__wait_agent",
]


def chat(body: dict[str, Any]) -> dict[str, Any]:
    return read_responses_request(body).chat


def upstream(inner: Any, body: dict[str, Any]) -> dict[str, Any]:
    sent = PivotTranslator(inner, ResponsesApi()).request(body, b"").body
    assert sent is not None
    return dict(json.loads(sent))


def test_the_additional_tools_item_is_the_request_s_tools_flattened() -> None:
    out = chat(FIRST)
    assert [t["function"]["name"] for t in out["tools"]] == CHAT_TOOLS
    exec_tool = out["tools"][0]["function"]
    grammar = FIRST["input"][0]["tools"][0]["tools"][0]["format"]["definition"]
    # The custom tool is a function of one string; its grammar, which no backend
    # enforces, is told to the model.
    assert exec_tool["parameters"] == {
        "type": "object",
        "properties": {
            "input": {
                "type": "string",
                "description": f"The input: text that matches this lark grammar.\n{grammar}",
            }
        },
        "required": ["input"],
    }
    assert exec_tool["description"] == FIRST["input"][0]["tools"][0]["tools"][0]["description"]
    # The developer and user messages are all there; the two settings items are not messages.
    assert [m["role"] for m in out["messages"]] == ["developer"] * 4 + ["user"] * 2
    assert out["reasoning_effort"] == "low"


def test_what_reaches_anthropic_bedrock_and_gemini() -> None:
    anthropic = upstream(AnthropicMessagesTranslator("claude-x"), FIRST)
    assert [t["name"] for t in anthropic["tools"]] == CHAT_TOOLS
    assert anthropic["tools"][0]["input_schema"]["required"] == ["input"]
    assert anthropic["thinking"]["type"] == "enabled"  # the configuration_update's effort
    bedrock = upstream(BedrockConverseTranslator("anthropic.claude-x"), FIRST)
    assert [t["toolSpec"]["name"] for t in bedrock["toolConfig"]["tools"]] == CHAT_TOOLS
    gemini = upstream(GeminiChatTranslator("/v1beta/models/g"), FIRST)
    declarations = gemini["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declarations] == CHAT_TOOLS
    assert gemini["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}


def test_replayed_custom_and_namespaced_calls_are_tool_calls_of_their_chat_functions() -> None:
    messages = chat(AFTER_SLEEP)["messages"]
    calls = [c for m in messages for c in m.get("tool_calls") or []]
    assert [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("call_7", "exec", json.dumps({"input": 'text("hi")'}, separators=(",", ":"))),
        ("call_8", "clock__sleep", '{"duration_ms": 1}'),
    ]
    results = [m for m in messages if m["role"] == "tool"]
    assert [r["tool_call_id"] for r in results] == ["call_7", "call_8"]
    assert results[0]["content"][1] == {"type": "text", "text": "hi"}
    anthropic = upstream(AnthropicMessagesTranslator("claude-x"), AFTER_SLEEP)
    uses = [b for m in anthropic["messages"] for b in m["content"] if b["type"] == "tool_use"]
    assert [(u["name"], u["input"]) for u in uses] == [
        ("exec", {"input": 'text("hi")'}),
        ("clock__sleep", {"duration_ms": 1}),
    ]


def test_the_last_configuration_update_wins_over_the_request_s_settings() -> None:
    schema = {"type": "object"}
    body: dict[str, Any] = {
        "model": "m",
        "reasoning": {"effort": "high"},
        "input": [
            {"type": "configuration_update", "reasoning": {"effort": "low"}},
            {"role": "user", "content": "x"},
            {
                "type": "configuration_update",
                "reasoning": {"effort": "medium"},
                "text": {"format": {"type": "json_schema", "name": "s", "schema": schema}},
            },
            {"type": "configuration_update", "reasoning": {}, "some_new_setting": 1},
        ],
    }
    out = chat(body)
    assert out["reasoning_effort"] == "medium"
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "s", "schema": schema},
    }
    body["input"].append({"type": "configuration_update", "text": {"format": {"type": "text"}}})
    assert "response_format" not in chat(body)
    # A backend's refusal names the item's field.
    body["input"][2]["reasoning"]["effort"] = "max"
    t = PivotTranslator(BedrockConverseTranslator("meta.llama"), ResponsesApi())
    with pytest.raises(TranslationError) as caught:
        t.request(body, b"")
    assert caught.value.param == "input[2].reasoning.effort"


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "web_search"}], "input[0].tools[0].type"),
        (
            [{"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "f"}, 3]}],
            "input[0].tools[0].tools[1]",
        ),
        (
            [{"type": "custom", "name": "c", "allowed_callers": ["programmatic"]}],
            "input[0].tools[0].allowed_callers",
        ),
        (
            [{"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "peg"}}],
            "input[0].tools[0].format",
        ),
        ("not a list", "input[0].tools"),
    ],
)
def test_what_the_backend_cannot_run_in_additional_tools_is_a_400_naming_it(
    tools: Any, param: str
) -> None:
    body = {
        "model": "m",
        "input": [
            {"type": "additional_tools", "role": "developer", "tools": tools},
            {"role": "user", "content": "x"},
        ],
    }
    with pytest.raises(TranslationError) as caught:
        chat(body)
    assert caught.value.param == param


def test_a_later_definition_of_a_tool_replaces_the_earlier_one() -> None:
    fn = {"type": "function", "name": "f", "description": "old"}
    body = {
        "model": "m",
        "tools": [fn],
        "input": [
            {"role": "user", "content": "x"},
            {
                "type": "additional_tools",
                "role": "developer",
                "tools": [{**fn, "description": "new"}],
            },
        ],
    }
    assert chat(body)["tools"] == [
        {"type": "function", "function": {"name": "f", "description": "new"}}
    ]


def anthropic_answer(*calls: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [tool_use(call_id, name, args) for call_id, name, args in calls],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 7},
    }


CALLS: tuple[tuple[str, str, Any], ...] = (
    ("toolu_1", "exec", {"input": 'text("hi")'}),
    ("toolu_2", "clock__sleep", {"duration_ms": 1}),
    ("toolu_3", "wait", {}),
)
#: The output items Codex runs: it finds a tool by namespace and name (a plain name is
#: looked for outside the namespaces), and runs ``exec`` only from a custom_tool_call.
EXPECTED = [
    ("custom_tool_call", "exec", "functions", 'text("hi")'),
    ("function_call", "sleep", "clock", '{"duration_ms":1}'),
    ("function_call", "wait", "functions", "{}"),
]


def outputs(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (i["type"], i["name"], i["namespace"], i.get("input", i.get("arguments")))
        for i in items
        if i["type"] != "message"
    ]


def test_calls_go_back_with_their_namespace_and_exec_as_a_custom_tool_call() -> None:
    t = PivotTranslator(AnthropicMessagesTranslator("claude-x"), ResponsesApi())
    t.request(FIRST | {"stream": False}, b"")
    t.response_headers(200, "application/json")
    out = t.response_body(json.dumps(anthropic_answer(*CALLS)).encode(), True)
    assert out.body is not None
    response = Response.model_validate_json(out.body)  # the SDK reads it
    assert outputs(json.loads(out.body)["output"]) == EXPECTED
    assert [getattr(i, "call_id", None) for i in response.output][-3:] == [
        "toolu_1",
        "toolu_2",
        "toolu_3",
    ]


def test_streamed_calls_go_back_the_same_way() -> None:
    t = PivotTranslator(AnthropicMessagesTranslator("claude-x"), ResponsesApi())
    t.request(FIRST, b"")
    t.response_headers(200, "text/event-stream")
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 4}}}
    ]
    for i, (call_id, name, args) in enumerate(CALLS):
        text = json.dumps(args, separators=(",", ":"))
        events += [
            {
                "type": "content_block_start",
                "index": i,
                "content_block": tool_use(call_id, name, {}),
            },
            {
                "type": "content_block_delta",
                "index": i,
                "delta": {"type": "input_json_delta", "partial_json": text[:5]},
            },
            {
                "type": "content_block_delta",
                "index": i,
                "delta": {"type": "input_json_delta", "partial_json": text[5:]},
            },
            {"type": "content_block_stop", "index": i},
        ]
    events += [
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 7},
        },
        {"type": "message_stop"},
    ]
    out = t.response_body(anthropic_sse(*events), False)
    assert out.complete and out.body is not None
    got = events_of(out.body)
    kinds = [e["type"] for e in got]
    custom = kinds.index("response.custom_tool_call_input.delta")
    # exec's input is the string inside the arguments: it goes out whole, once complete.
    assert kinds[custom - 1 : custom + 3] == [
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    assert got[custom]["delta"] == got[custom + 1]["input"] == 'text("hi")'
    assert got[custom - 1]["item"]["type"] == "custom_tool_call"
    # sleep's two fragments and wait's one stream as they come.
    assert kinds.count("response.function_call_arguments.delta") == 3
    done = [e["item"] for e in got if e["type"] == "response.output_item.done"]
    assert outputs(done) == EXPECTED
    assert outputs(got[-1]["response"]["output"]) == EXPECTED


def test_a_custom_call_whose_arguments_are_not_an_input_object_goes_back_as_written() -> None:
    t = PivotTranslator(AnthropicMessagesTranslator("claude-x"), ResponsesApi())
    t.request(FIRST | {"stream": False}, b"")
    t.response_headers(200, "application/json")
    out = t.response_body(
        json.dumps(anthropic_answer(("toolu_1", "exec", {"code": 1}))).encode(), True
    )
    assert out.body is not None
    (item,) = json.loads(out.body)["output"]
    assert (item["type"], item["input"]) == ("custom_tool_call", '{"code":1}')


def test_an_agent_message_between_codex_s_agents_is_a_user_message() -> None:
    """The shape of Codex's ``agent_message`` items (sent after its sub-agents talk) is
    built from its source (``ResponseItem::AgentMessage``), not recorded."""
    item = {
        "type": "agent_message",
        "id": "amsg_1",
        "author": "/root/worker",
        "recipient": "/root",
        "content": [{"type": "input_text", "text": "done"}, {"type": "input_text", "text": "ok"}],
    }
    body = {"model": "m", "input": [{"role": "user", "content": "x"}, item]}
    assert chat(body)["messages"][1] == {"role": "user", "content": "done\nok"}
    item["content"] = [{"type": "encrypted_content", "encrypted_content": "gAAAA"}]
    with pytest.raises(TranslationError) as caught:
        chat(body)
    assert caught.value.param == "input[1].content[0]"
    assert "only supported by OpenAI models" in str(caught.value)
