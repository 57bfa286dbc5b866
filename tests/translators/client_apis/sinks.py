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
