"""Thinking, signatures and the request checks Claude makes, shared by the Anthropic and
Bedrock routes.

When a request enables thinking (Anthropic ``thinking``, Bedrock
``additionalModelRequestFields.thinking``, ``{"type": "enabled", "budget_tokens": N}``),
the mock thinks ``x-mock-reasoning-tokens`` words (default 4) before it answers, in a
block signed with :func:`signature`; those words count as output tokens, as Claude's do.
Like Claude, it refuses (400):

- ``budget_tokens`` below 1024, or not below the request's maximum output tokens;
- a replayed thinking block whose signature does not match its text;
- with thinking on, a final assistant turn that uses a tool but does not start with its
  thinking block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import MockError
from .knobs import Knobs
from .words import reply_pieces

__all__ = [
    "DEFAULT_THINKING_WORDS",
    "Thinking",
    "check_cache_control",
    "check_history",
    "requested_thinking",
    "signature",
]

DEFAULT_THINKING_WORDS = 4
_MIN_BUDGET = 1024
_CACHE_TTLS = frozenset({"5m", "1h"})


@dataclass(frozen=True, slots=True)
class Thinking:
    """The thinking block the mock answers with."""

    pieces: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def signature(self) -> str:
        return signature(self.text)


def signature(text: str) -> str:
    """The mock's signature of a thinking text (deterministic, checked on replay)."""
    return "mocksig-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def requested_thinking(config: Any, max_tokens: Any, knobs: Knobs) -> Thinking | None:
    """The thinking a request enables, checked as Claude checks it; ``None`` if off."""
    if config is None:
        return None
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise MockError(400, "thinking: Input should be an object with a 'type'")
    if config["type"] != "enabled":
        return None
    budget = config.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < _MIN_BUDGET:
        raise MockError(400, f"thinking.budget_tokens: must be an integer >= {_MIN_BUDGET}")
    if not isinstance(max_tokens, int) or max_tokens <= budget:
        raise MockError(400, "max_tokens must be greater than thinking.budget_tokens")
    return Thinking(reply_pieces(knobs.reasoning_tokens or DEFAULT_THINKING_WORDS))


BlockTest = Callable[[dict[str, Any]], bool]


def check_history(
    messages: Any,
    thinking_on: bool,
    *,
    is_thinking: BlockTest,
    is_tool_use: BlockTest,
    signed: Callable[[dict[str, Any]], tuple[str, str] | None],
) -> None:
    """Replayed thinking must carry its own signature; with thinking on, the last
    assistant turn that uses a tool must start with thinking.

    The three callables read one provider's blocks: ``is_thinking(block)`` (thinking or
    redacted), ``is_tool_use(block)``, and ``signed(block)`` -> ``(text, signature)``
    or ``None`` for a block without text (redacted)."""
    if not isinstance(messages, list):
        return
    last_assistant: list[Any] | None = None
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        if not isinstance(content, list):
            last_assistant = None
            continue
        last_assistant = content
        for block in content:
            found = signed(block) if isinstance(block, dict) else None
            if found is not None and found[1] != signature(found[0]):
                raise MockError(400, "Invalid `signature` in `thinking` block")
    if thinking_on and last_assistant:
        uses_tool = any(isinstance(b, dict) and is_tool_use(b) for b in last_assistant)
        first = last_assistant[0]
        if uses_tool and not (isinstance(first, dict) and is_thinking(first)):
            raise MockError(
                400,
                "Expected `thinking` or `redacted_thinking`, but found a tool use. When "
                "`thinking` is enabled, a final `assistant` message must start with a "
                "thinking block.",
            )


def check_cache_control(value: Any, where: str, kind: str) -> None:
    """An Anthropic ``cache_control`` (``kind`` ephemeral) or a Bedrock ``cachePoint``
    (``kind`` default), checked."""
    if not isinstance(value, dict):
        raise MockError(400, f"{where}: Input should be an object")
    if value.get("type") != kind:
        raise MockError(400, f"{where}.type: Input should be '{kind}'")
    ttl = value.get("ttl")
    if ttl is not None and ttl not in _CACHE_TTLS:
        raise MockError(400, f"{where}.ttl: Input should be '5m' or '1h'")
