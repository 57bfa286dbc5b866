"""Bad input to the Responses and Messages endpoints, property-based, in process: whatever
a client sends is routed or refused with a 4xx in its API's error shape, never a 5xx or
an exception, on every kind of backend (passthrough and each chat pivot)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.extproc.framework.fake_envoy import Conversation, request_body, request_headers
from tests.extproc.gateway.shared import gateway_servicer

ENDPOINT = "http://127.0.0.1:8000"
CONFIG = {
    "backends": [
        {"name": "openai", "schema": "openai", "endpoint": ENDPOINT},
        {"name": "azure", "schema": "azure-openai", "endpoint": ENDPOINT, "api_version": "v"},
        {"name": "anthropic", "schema": "anthropic", "endpoint": ENDPOINT},
        {"name": "gemini", "schema": "gcp-gemini", "endpoint": ENDPOINT},
        {
            "name": "bedrock",
            "schema": "aws-bedrock",
            "endpoint": ENDPOINT,
            "auth": {
                "aws": {
                    "region": "us-east-1",
                    "access_key_id": {"value": "AKID"},
                    "secret_access_key": {"value": "secret"},
                }
            },
        },
    ],
    "models": [
        {"name": "openai", "backend": "openai"},
        {"name": "azure", "backend": "azure"},
        {"name": "anthropic", "backend": "anthropic"},
        {"name": "gemini", "backend": "gemini"},
        {"name": "bedrock-claude", "backend": "bedrock", "backend_model": "anthropic.claude-x"},
        {"name": "bedrock-llama", "backend": "bedrock", "backend_model": "meta.llama3"},
    ],
}
MODELS = [m["name"] for m in CONFIG["models"]]  # type: ignore[index]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=False), st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def shaped(keys: list[str], types: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with a known ``type`` and known keys holding anything."""
    return st.fixed_dictionaries(
        {"type": st.sampled_from(types) | scalars},
        optional={key: values | st.text(max_size=8) for key in keys},
    )


response_parts = shaped(
    ["text", "image_url", "file_data", "file_id", "filename", "detail", "refusal"],
    ["input_text", "output_text", "input_image", "input_file", "refusal", "text"],
)
response_tools = shaped(
    ["name", "description", "parameters", "format", "tools", "strict"],
    ["function", "custom", "namespace", "web_search"],
)
response_items = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            [
                "message",
                "function_call",
                "function_call_output",
                "reasoning",
                "item_reference",
                "custom_tool_call",
                "custom_tool_call_output",
                "additional_tools",
                "configuration_update",
                "agent_message",
            ]
        )
        | scalars,
        "role": st.sampled_from(["user", "assistant", "system", "developer"]) | values,
        "content": st.text(max_size=8) | st.lists(response_parts, max_size=3) | values,
        "call_id": st.text(max_size=5) | values,
        "name": st.text(max_size=5) | values,
        "arguments": st.sampled_from(["{}", '{"a":1}', "nope"]) | values,
        "output": st.text(max_size=5) | st.lists(response_parts, max_size=2) | values,
        "encrypted_content": st.text(max_size=10) | values,
        "namespace": st.text(max_size=5) | values,
        "input": st.text(max_size=5) | values,
        "tools": st.lists(response_tools, max_size=2) | values,
        "reasoning": st.sampled_from([{"effort": "low"}, {"effort": 3}]) | values,
        "text": st.sampled_from([{"format": {"type": "text"}}, {"format": 1}]) | values,
    },
)
responses_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "input": st.text(min_size=1, max_size=8) | st.lists(response_items, min_size=1, max_size=4),
    },
    optional={
        key: values
        | st.sampled_from(
            [{"type": "function", "name": "f", "parameters": {"type": "object"}}, "auto", True]
        )
        for key in [
            "instructions",
            "tools",
            "tool_choice",
            "max_output_tokens",
            "temperature",
            "text",
            "reasoning",
            "stream",
            "store",
            "include",
            "truncation",
            "parallel_tool_calls",
            "service_tier",
            "metadata",
            "background",
            "previous_response_id",
        ]
    },
)

message_blocks = shaped(
    [
        "text",
        "source",
        "id",
        "name",
        "input",
        "tool_use_id",
        "content",
        "is_error",
        "cache_control",
        "thinking",
        "signature",
        "data",
        "title",
    ],
    ["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"],
)
message_turns = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "user"]) | st.just("user") | values,
        "content": st.text(max_size=8) | st.lists(message_blocks, max_size=3),
    }
)
messages_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(MODELS),
        "max_tokens": st.integers(1, 100) | st.integers(-1, 100) | values,
        "messages": st.lists(message_turns, min_size=1, max_size=3),
    },
    optional={
        key: values
        | st.sampled_from(
            [{"name": "f", "input_schema": {"type": "object"}}, {"type": "any"}, "S", True]
        )
        for key in [
            "system",
            "tools",
            "tool_choice",
            "thinking",
            "stop_sequences",
            "stream",
            "metadata",
            "temperature",
            "top_k",
            "service_tier",
        ]
    },
)


async def outcome(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """``None`` when routed; else the local reply's status and JSON body."""
    conv = Conversation(gateway_servicer(CONFIG))
    await conv.send(request_headers(path))
    answer = await conv.send(request_body(json.dumps(body).encode()))
    await conv.close()
    if answer.WhichOneof("response") != "immediate_response":
        assert answer.WhichOneof("response") == "request_body"
        return None
    reply = answer.immediate_response
    return reply.status.code, json.loads(reply.body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(responses_bodies)
async def test_responses_bodies_are_routed_or_a_4xx_openai_error(body: dict[str, Any]) -> None:
    result = await outcome("/v1/responses", body)
    if result is not None:
        status, doc = result
        assert 400 <= status < 500, doc
        assert isinstance(doc["error"]["message"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages_bodies)
async def test_messages_bodies_are_routed_or_a_4xx_anthropic_error(body: dict[str, Any]) -> None:
    result = await outcome("/v1/messages", body)
    if result is not None:
        status, doc = result
        assert 400 <= status < 500, doc
        assert doc["type"] == "error" and isinstance(doc["error"]["message"], str)
