"""Helpers for the answer-event writers' tests: send typed events, read the SSE back."""

from __future__ import annotations

import json
from typing import Any

from aigateway.translators.client_apis.chat.events import AnswerEvent, AnswerSink, deliver
from aigateway.translators.wire.sse import SseDecoder


def write(sink: AnswerSink, *events: AnswerEvent) -> list[tuple[str | None, dict[str, Any]]]:
    """``events`` sent to ``sink``, and what it wrote: (event name, parsed data) each."""
    deliver(list(events), sink)
    return [(event.event, json.loads(event.data)) for event in SseDecoder().feed(sink.output())]


def names(written: list[tuple[str | None, dict[str, Any]]]) -> list[str | None]:
    return [name for name, _ in written]


#: The Responses stream events of one message item written in two text deltas, in order.
TEXT_ITEM_EVENTS = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
