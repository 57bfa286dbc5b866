"""The usage contract: how many prompt tokens each request schema is worth.

A prompt token is a whitespace-separated word (:func:`~.words.count_words`) of the text
the model would read as conversation. Counted, per schema:

- OpenAI / Azure chat: every message's ``content`` when it is a string, and the
  ``text`` of its ``{"type": "text"}`` parts (and the ``refusal`` of its
  ``{"type": "refusal"}`` parts, which translations send as text) when it is a list.
  That covers system, developer, user, assistant and tool messages alike.
- Bedrock Converse: ``system[].text``; ``messages[].content[].text``; and the text of
  tool results, ``messages[].content[].toolResult.content[].text``.
- Anthropic Messages: ``system`` (a string, or the ``text`` of its blocks);
  ``messages[].content`` when a string, else its ``text`` blocks; and tool results,
  ``tool_result.content`` as a string or as ``text`` blocks.
- OpenAI Responses: ``instructions``; ``input`` when a string, else each message item's
  ``content`` (a string, or the ``text`` of its ``input_text`` / ``output_text`` parts)
  and each ``function_call_output``'s ``output`` (a string, or its ``input_text`` parts).
- Gemini ``generateContent`` (Gemini API and Vertex AI): ``systemInstruction.parts[].text``;
  ``contents[].parts[].text``; and tool results, every string in
  ``contents[].parts[].functionResponse.response``.
- Embeddings: words of each input string; for token arrays, the number of tokens.

Not counted anywhere: tool definitions, tool-call arguments, images and documents,
names, and anything that is not text. So an OpenAI request and its faithful Bedrock or
Anthropic translation count the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .errors import MockError
from .words import count_words

__all__ = [
    "anthropic_prompt_words",
    "bedrock_prompt_words",
    "embedding_input_tokens",
    "gemini_prompt_words",
    "openai_prompt_words",
    "responses_prompt_words",
]


def openai_prompt_words(messages: list[Any]) -> int:
    """Prompt words of an OpenAI ``messages`` list."""
    total = 0
    for message in messages:
        if isinstance(message, dict):
            content = message.get("content")
            total += _text_words(content, "text")
            if isinstance(content, list):
                total += sum(
                    _str_words(part.get("refusal"))
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "refusal"
                )
    return total


def responses_prompt_words(payload: dict[str, Any]) -> int:
    """Prompt words of an OpenAI Responses request body."""
    total = _str_words(payload.get("instructions"))
    items = payload.get("input")
    if isinstance(items, str):
        return total + count_words(items)
    if not isinstance(items, list):
        return total
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        content = item.get("content") if kind == "message" else None
        if kind == "function_call_output":
            content = item.get("output")
        if isinstance(content, str):
            total += count_words(content)
        elif isinstance(content, list):
            total += sum(
                _str_words(part.get("text"))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("input_text", "output_text")
            )
    return total


def bedrock_prompt_words(payload: dict[str, Any]) -> int:
    """Prompt words of a Bedrock Converse request body."""
    total = _blocks_words(payload.get("system"))
    for content in _message_contents(payload):
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            text = block.get("text")
            if isinstance(text, str):
                total += count_words(text)
            result = block.get("toolResult")
            if isinstance(result, dict):
                total += _blocks_words(result.get("content"))
    return total


def anthropic_prompt_words(payload: dict[str, Any]) -> int:
    """Prompt words of an Anthropic Messages request body."""
    total = _text_words(payload.get("system"), "text")
    for content in _message_contents(payload):
        if isinstance(content, str):
            total += count_words(content)
        elif isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind == "text":
                    total += _str_words(block.get("text"))
                elif kind == "tool_result":
                    total += _text_words(block.get("content"), "text")
    return total


def _message_contents(payload: dict[str, Any]) -> Iterator[Any]:
    """The ``content`` of each message of a Messages or Converse body."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                yield message.get("content")


def gemini_prompt_words(payload: dict[str, Any]) -> int:
    """Prompt words of a Gemini ``generateContent`` request body."""
    system = payload.get("systemInstruction")
    total = _parts_words(system.get("parts")) if isinstance(system, dict) else 0
    contents = payload.get("contents")
    if isinstance(contents, list):
        for content in contents:
            if isinstance(content, dict):
                total += _parts_words(content.get("parts"))
    return total


def _parts_words(parts: Any) -> int:
    if not isinstance(parts, list):
        return 0
    total = 0
    for part in parts:
        if not isinstance(part, dict):
            continue
        total += _str_words(part.get("text"))
        result = part.get("functionResponse")
        if isinstance(result, dict):
            total += _strings_words(result.get("response"))
    return total


def _strings_words(value: Any) -> int:
    """Words of every string inside a JSON value."""
    if isinstance(value, str):
        return count_words(value)
    if isinstance(value, dict):
        return sum(_strings_words(v) for v in value.values())
    if isinstance(value, list):
        return sum(_strings_words(v) for v in value)
    return 0


def embedding_input_tokens(value: Any) -> list[int]:
    """Tokens of each embedding input: a string, a list of strings, a token array
    (list of ints) or a list of token arrays. Raises :class:`MockError` (400) otherwise.
    """
    if isinstance(value, str):
        return [count_words(value)]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [count_words(item) for item in value]
        if all(_is_token(item) for item in value):
            return [len(value)]
        if all(isinstance(item, list) and all(_is_token(t) for t in item) for item in value):
            return [len(item) for item in value]
    raise MockError(
        400,
        "'input' must be a string, an array of strings, an array of tokens "
        "or an array of token arrays",
        param="input",
    )


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_words(value: Any) -> int:
    return count_words(value) if isinstance(value, str) else 0


def _text_words(content: Any, part_type: str) -> int:
    """Words of a string, or of the ``text`` of the ``part_type`` parts of a list."""
    if isinstance(content, str):
        return count_words(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if isinstance(part, dict) and part.get("type") == part_type:
            total += _str_words(part.get("text"))
    return total


def _blocks_words(blocks: Any) -> int:
    """Words of the ``text`` members of a Bedrock content-block list."""
    if not isinstance(blocks, list):
        return 0
    return sum(_str_words(block.get("text")) for block in blocks if isinstance(block, dict))
