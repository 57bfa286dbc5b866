"""What the gateway does with each request field of a client API when it translates for
another backend (docs/client-apis.md, "Field policy"): one table per client API.

- **translated**: expressed in the backend's request (some values may still be refused
  by the translator, e.g. ``store: true``);
- **ignored**: metadata, hints, ids and caching keys whose absence does not change the
  answer;
- **refused**: the answer would be wrong or unsafe without it (a 400 naming the field).

A field in none of the groups is ignored with a debug log line: clients add fields with
every release. Where meaning lives (tool types, content part and input item types,
response formats) the readers refuse what they do not know instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger("aigateway.translators")


class Treatment(Enum):
    TRANSLATED = "translated"
    IGNORED = "ignored"
    REFUSED = "refused"


@dataclass(slots=True, frozen=True)
class FieldPolicy:
    """The request fields of one client API (or of one object inside it, ``where``)."""

    where: str
    translated: frozenset[str]
    ignored: frozenset[str]
    refused: frozenset[str]

    def __post_init__(self) -> None:
        groups = (self.translated, self.ignored, self.refused)
        assert sum(len(g) for g in groups) == len(frozenset().union(*groups)), self.where

    def treatment(self, key: str) -> Treatment | None:
        """The field's group, ``None`` when it is not listed."""
        if key in self.translated:
            return Treatment.TRANSLATED
        if key in self.ignored:
            return Treatment.IGNORED
        if key in self.refused:
            return Treatment.REFUSED
        return None

    def skips(self, key: str) -> bool:
        """True for a field the translator leaves out: an ignored one, or one it does not
        know (logged at debug, its name cut to keep the line short)."""
        treatment = self.treatment(key)
        if treatment is None:
            log.debug("ignored unknown request field %r in %s", key[:60], self.where)
            return True
        return treatment is Treatment.IGNORED


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: ``POST /v1/chat/completions`` read by a backend's chat translator (the pivot);
#: ``thinking`` and ``output_config`` are Claude's, in the dialect the Anthropic and
#: Bedrock translators read.
CHAT_FIELDS = FieldPolicy(
    "a chat completion request",
    translated=_names(
        """model messages stream stream_options max_tokens max_completion_tokens temperature
        top_p stop tools tool_choice parallel_tool_calls response_format seed
        presence_penalty frequency_penalty reasoning_effort logprobs n modalities
        thinking output_config"""
    ),
    ignored=_names(
        """user metadata store service_tier safety_identifier prompt_cache_key
        prompt_cache_retention verbosity"""
    ),
    refused=_names(
        """functions function_call top_logprobs logit_bias audio prediction
        web_search_options"""
    ),
)

#: ``POST /v1/responses`` on a backend reached through the chat pivot.
RESPONSES_FIELDS = FieldPolicy(
    "a Responses request",
    translated=_names(
        """model input instructions stream max_output_tokens temperature top_p
        parallel_tool_calls user service_tier tools tool_choice text reasoning store
        background truncation include"""
    ),
    ignored=_names(
        """metadata safety_identifier prompt_cache_key prompt_cache_retention stream_options
        client_metadata"""
    ),
    refused=_names("previous_response_id conversation prompt top_logprobs max_tool_calls"),
)

#: A function tool of a Responses request.
RESPONSES_TOOL_FIELDS = FieldPolicy(
    "a Responses function tool",
    translated=_names("type name description parameters strict"),
    # ``defer_loading`` (tool search loads the tool when needed): sent with the others.
    ignored=_names("defer_loading"),
    refused=_names("allowed_callers output_schema"),
)

#: A custom tool of a Responses request (free-text input): a function with one string.
RESPONSES_CUSTOM_TOOL_FIELDS = FieldPolicy(
    "a Responses custom tool",
    translated=_names("type name description format"),
    ignored=_names("defer_loading"),
    refused=_names("allowed_callers"),
)

#: A ``namespace`` tool of a Responses request: its function and custom tools, flattened.
RESPONSES_NAMESPACE_FIELDS = FieldPolicy(
    "a Responses namespace tool",
    translated=_names("type name tools"),
    # The namespace's one-line summary: each of its tools keeps its own description.
    ignored=_names("description"),
    refused=frozenset(),
)

#: An ``additional_tools`` input item (Codex): more tools, declared in the conversation.
RESPONSES_ADDITIONAL_TOOLS_FIELDS = FieldPolicy(
    "a Responses additional_tools item",
    translated=_names("type tools"),
    ignored=_names("id role"),
    refused=frozenset(),
)

#: A ``configuration_update`` input item: settings that apply from there on.
RESPONSES_CONFIGURATION_UPDATE_FIELDS = FieldPolicy(
    "a Responses configuration_update item",
    translated=_names("type reasoning text"),
    ignored=_names("id"),
    refused=frozenset(),
)

#: A ``tool_search`` tool (OpenAI runs the search): left out, as the deferred tools it
#: would find are sent with the others; the reader refuses one the client runs.
RESPONSES_TOOL_SEARCH_FIELDS = FieldPolicy(
    "a Responses tool_search tool",
    translated=_names("type execution"),
    # What a search the client runs shows the model: no such search here.
    ignored=_names("description parameters"),
    refused=frozenset(),
)

#: A ``tool_search_output`` input item: the tools a tool search loaded join ``tools``.
RESPONSES_TOOL_SEARCH_OUTPUT_FIELDS = FieldPolicy(
    "a Responses tool_search_output item",
    translated=_names("type tools"),
    ignored=_names("id call_id execution status"),
    refused=frozenset(),
)

#: ``POST /v1/messages`` on a backend reached through the chat pivot.
MESSAGES_FIELDS = FieldPolicy(
    "a Messages request",
    translated=_names(
        """model messages system max_tokens temperature top_p stop_sequences stream metadata
        tools tool_choice thinking output_config context_management speed service_tier
        cache_control"""
    ),
    ignored=_names("inference_geo"),
    refused=_names("top_k mcp_servers container"),
)

#: A client tool of a Messages request.
MESSAGES_TOOL_FIELDS = FieldPolicy(
    "a Messages tool",
    translated=_names("type name description input_schema strict cache_control"),
    # ``defer_loading`` is met by sending the tool with the others; the chat backends
    # stream tool input anyway (``eager_input_streaming``); examples only help the model.
    ignored=_names("defer_loading eager_input_streaming input_examples"),
    refused=_names("allowed_callers"),
)

#: Every table, for the docs test and the docs page.
POLICIES = (
    CHAT_FIELDS,
    RESPONSES_FIELDS,
    RESPONSES_TOOL_FIELDS,
    RESPONSES_CUSTOM_TOOL_FIELDS,
    RESPONSES_NAMESPACE_FIELDS,
    RESPONSES_ADDITIONAL_TOOLS_FIELDS,
    RESPONSES_CONFIGURATION_UPDATE_FIELDS,
    RESPONSES_TOOL_SEARCH_FIELDS,
    RESPONSES_TOOL_SEARCH_OUTPUT_FIELDS,
    MESSAGES_FIELDS,
    MESSAGES_TOOL_FIELDS,
)
