"""What a Claude model takes, read from its name (docs/client-apis.md, "Field policy"):
Anthropic's ids (``claude-sonnet-4-5-20250929``), Vertex AI's (``claude-sonnet-4-5@...``)
and Bedrock's (``us.anthropic.claude-sonnet-4-5-...-v1:0``) alike."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aigateway.translators.client_apis import chat
from aigateway.translators.contract import TranslationError

# claude-opus-4-5, claude-sonnet-4-20250514 (minor 0: a date follows), claude-3-7-sonnet
_NEW = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?!\d)")
_OLD = re.compile(r"claude-(\d+)(?:-(\d{1,2}))?-(opus|sonnet|haiku)")

# The first version of each family with native structured outputs (output_config.format)
# and with the effort parameter (output_config.effort).
_STRUCTURED = {"opus": (4, 1), "sonnet": (4, 5), "haiku": (4, 5)}
_EFFORT = {"opus": (4, 5), "sonnet": (4, 6)}
# xhigh as high: the highest level every effort-taking model accepts ("max" is not).
_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}


@dataclass(slots=True, frozen=True)
class ClaudeModel:
    family: str
    version: tuple[int, int]

    @property
    def structured_outputs(self) -> bool:
        return self.version >= _STRUCTURED.get(self.family, (99, 0))

    @property
    def effort(self) -> bool:
        return self.version >= _EFFORT.get(self.family, (99, 0))


def claude_model(name: str) -> ClaudeModel | None:
    """The family and version a Claude model id names, ``None`` for anything else."""
    lowered = name.lower()
    new = _NEW.search(lowered)
    if new is not None:
        return ClaudeModel(new.group(1), (int(new.group(2)), int(new.group(3) or 0)))
    old = _OLD.search(lowered)
    if old is not None:
        return ClaudeModel(old.group(3), (int(old.group(1)), int(old.group(2) or 0)))
    return None


def native_output_config(
    payload: dict[str, Any], model: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Claude's ``output_config`` for what the model takes natively: ``reasoning_effort``
    as ``effort``, ``response_format`` as ``format`` (then no answer tool is needed, and
    thinking is allowed). Returns it with the payload left for the rest of the
    translation (those fields removed)."""
    claude = claude_model(model)
    if claude is None:
        return {}, payload
    out: dict[str, Any] = {}
    taken: set[str] = set()
    effort = payload.get("reasoning_effort")
    if claude.effort and effort is not None and effort != "none":
        if not isinstance(effort, str) or effort not in _EFFORTS:
            raise TranslationError(
                "'reasoning_effort' must be one of none, minimal, low, medium, high, xhigh",
                param="reasoning_effort",
            )
        out["effort"] = _EFFORTS[effort]
        taken.add("reasoning_effort")
    if claude.structured_outputs:
        fmt = chat.response_format_of(payload)
        if fmt is not None:
            out["format"] = {"type": "json_schema", "schema": fmt.schema}
            taken.add("response_format")
    if not taken:
        return out, payload
    return out, {k: v for k, v in payload.items() if k not in taken}
