"""The pure parts of the contract: words, prompt counting, tool arguments, knob parsing."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from aigateway.mock_backend import VOCABULARY, Fault, reply_pieces, reply_text
from aigateway.mock_backend.errors import MockError
from aigateway.mock_backend.knobs import DEFAULT_KNOBS, parse_knobs
from aigateway.mock_backend.prompt_words import (
    anthropic_prompt_words,
    bedrock_prompt_words,
    embedding_input_tokens,
    gemini_prompt_words,
    openai_prompt_words,
)
from aigateway.mock_backend.tools import argument_fragments, mock_arguments
from aigateway.mock_backend.words import count_words, limit_tokens
from aigateway.translators.backends.gemini import generate_content_request


def test_reply_pieces_concatenate_to_the_reply_text() -> None:
    assert reply_pieces(3) == ("alpha", " beta", " gamma")
    for n in (0, 1, 2, 24, 25, 100):
        assert "".join(reply_pieces(n)) == reply_text(n)
        assert count_words(reply_text(n)) == n
    assert reply_text(26).split()[24:] == ["alpha", "beta"]
    assert len(set(VOCABULARY)) == len(VOCABULARY) == 24


def test_count_words_splits_on_any_whitespace() -> None:
    assert count_words("  a\tb\nc  d ") == 4
    assert count_words("") == 0


def test_limit_tokens() -> None:
    assert limit_tokens(8, None) == (8, False)
    assert limit_tokens(8, 100) == (8, False)
    assert limit_tokens(8, 8) == (8, False)
    assert limit_tokens(8, 3) == (3, True)
    assert limit_tokens(8, True) == (8, False)
    assert limit_tokens(8, "3") == (8, False)


def test_the_same_conversation_counts_the_same_in_every_schema() -> None:
    openai = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
        {"role": "tool", "tool_call_id": "c", "content": "sunny"},
    ]
    bedrock = {
        "system": [{"text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"text": "weather in Paris"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "c", "input": {}}}]},
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "c", "content": [{"text": "sunny"}]}}],
            },
        ],
    }
    anthropic = {
        "system": "be brief",
        "messages": [
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "input": {}}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "c", "content": "sunny"}],
            },
        ],
    }
    assert openai_prompt_words(openai) == bedrock_prompt_words(bedrock) == 6
    assert anthropic_prompt_words(anthropic) == 6
    # Gemini's request, as the gateway translates the OpenAI one, counts the same too.
    calls = [{"id": "c", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]
    openai[2]["tool_calls"] = calls
    gemini = generate_content_request({"model": "m", "messages": openai})
    assert gemini_prompt_words(gemini) == 6


def test_prompt_counting_ignores_what_is_not_text() -> None:
    assert openai_prompt_words(["junk", {"content": 5}, {"content": [{"type": "text"}]}]) == 0
    assert bedrock_prompt_words({"system": "x", "messages": [1, {"content": {"text": "x"}}]}) == 0
    assert anthropic_prompt_words({"messages": [{"content": [{"type": "image"}, 3]}]}) == 0
    assert gemini_prompt_words({"contents": [{"parts": [{"inlineData": {}}, 3]}, "x"]}) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a b", [2]), (["a", "b c"], [1, 2]), ([5, 6, 7], [3]), ([[1], [2, 3]], [1, 2])],
)
def test_embedding_input_tokens(value: object, expected: list[int]) -> None:
    assert embedding_input_tokens(value) == expected


@pytest.mark.parametrize("value", [None, 3, [], [True], ["a", 1], [[1], "a"]])
def test_embedding_input_tokens_rejects(value: object) -> None:
    with pytest.raises(MockError) as caught:
        embedding_input_tokens(value)
    assert caught.value.status == 400


def test_mock_arguments_fill_required_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "n": {"type": ["null", "number"]},
            "b": {"type": "boolean"},
            "a": {"type": "array"},
            "e": {"enum": ["x", "y"]},
            "c": {"const": 7},
            "o": {"type": "object", "properties": {"inner": {}}, "required": ["inner"]},
            "optional": {"type": "string"},
        },
        "required": ["s", "i", "n", "b", "a", "e", "c", "o", "undeclared"],
    }
    assert mock_arguments(schema) == {
        "s": "mock",
        "i": 1,
        "n": 1,
        "b": True,
        "a": [],
        "e": "x",
        "c": 7,
        "o": {"inner": "mock"},
        "undeclared": "mock",
    }
    assert mock_arguments(None) == {}
    assert mock_arguments({"type": "object"}) == {}


def test_argument_fragments() -> None:
    assert argument_fragments('{"a":1}', 3) == ['{"a', '":', "1}"]
    assert argument_fragments("{}", 8) == ["{", "}"]
    assert argument_fragments("{}", 0) == ["{}"]
    assert "".join(argument_fragments('{"city":"mock"}', 5)) == '{"city":"mock"}'


def test_knobs_default_and_parsed() -> None:
    assert parse_knobs(CIMultiDict()) is DEFAULT_KNOBS
    knobs = parse_knobs(
        CIMultiDict(
            {
                "X-Mock-Output-Tokens": "3",
                "x-mock-status": "429",
                "x-mock-error-type": "t",
                "x-mock-ttft-ms": "1500",
                "x-mock-itl-ms": "20",
                "x-mock-tool-call": " f ",
                "x-mock-cached-tokens": "2",
                "x-mock-reasoning-tokens": "4",
                "x-mock-fault": "GZIP, reset,",
                "x-mock-fault-after": "0",
            }
        )
    )
    assert (knobs.output_tokens, knobs.status, knobs.error_type) == (3, 429, "t")
    assert (knobs.ttft_s, knobs.itl_s) == (1.5, 0.02)
    assert (knobs.tool_call, knobs.cached_tokens, knobs.reasoning_tokens) == ("f", 2, 4)
    assert knobs.faults == {Fault.GZIP, Fault.RESET}
    assert knobs.stream_fault_after == 0
    assert parse_knobs(CIMultiDict({"x-mock-status": "200"})).status is None


@pytest.mark.parametrize(
    "headers",
    [
        {"x-mock-output-tokens": "many"},
        {"x-mock-status": "42"},
        {"x-mock-ttft-ms": "-5"},
        {"x-mock-fault": "gzip,boom"},
        {"x-mock-fault-after": "1.5"},
    ],
)
def test_bad_knobs_are_400(headers: dict[str, str]) -> None:
    with pytest.raises(MockError) as caught:
        parse_knobs(CIMultiDict(headers))
    assert caught.value.status == 400
    assert next(iter(headers)) in caught.value.message
