"""The pivot hands answers to the client API's writer as values: a backend translator's
answer is never written as chat completion bytes and read back."""

from __future__ import annotations

import json

import pytest

from aigateway.translators.client_apis import pivot
from aigateway.translators.client_apis.chat import answers
from aigateway.translators.matrix import BackendOptions, route_translators
from aigateway.translators.wire.sse import SseDecoder
from tests.translators.backends.test_bedrock import TEXT_STREAM

CONVERSE = {
    "output": {"message": {"role": "assistant", "content": [{"text": "Hello there"}]}},
    "stopReason": "end_turn",
    "usage": {"inputTokens": 9, "outputTokens": 2, "totalTokens": 11},
}
MESSAGES = {"model": "c", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}


def bedrock_messages() -> pivot.PivotTranslator:
    options = BackendOptions(schema="aws-bedrock", upstream_model="anthropic.claude-3-5-sonnet")
    translator = route_translators(options).translator("messages")
    assert isinstance(translator, pivot.PivotTranslator)
    return translator


@pytest.fixture
def no_chat_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the pivot read a chat answer back")

    monkeypatch.setattr(pivot, "read_completion", refuse)
    monkeypatch.setattr(answers.ChunkReader, "feed", refuse)


@pytest.mark.usefixtures("no_chat_reading")
def test_a_whole_answer_reaches_the_messages_writer_as_values() -> None:
    t = bedrock_messages()
    t.request(dict(MESSAGES), b"")
    assert not t.response_headers(200, "application/json").streamed
    out = t.response_body(json.dumps(CONVERSE).encode(), True)
    assert out.complete and out.error is None
    assert out.body is not None
    message = json.loads(out.body)
    assert message["content"] == [{"type": "text", "text": "Hello there"}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["output_tokens"] == 2


@pytest.mark.usefixtures("no_chat_reading")
def test_a_streamed_answer_reaches_the_messages_writer_as_events() -> None:
    t = bedrock_messages()
    t.request({**MESSAGES, "stream": True}, b"")
    assert t.response_headers(200, "application/vnd.amazon.eventstream").streamed
    out = t.response_body(b"".join(TEXT_STREAM), True)
    assert out.complete and out.error is None
    assert out.body is not None
    names = [event.event for event in SseDecoder().feed(out.body)]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "content_block_delta" in names
