"""The translator matrix: which translator serves each (client API, backend schema)."""

from __future__ import annotations

import pytest

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator
from aigateway.translators.backends.azure import AzureOpenAITranslator
from aigateway.translators.backends.bedrock import BedrockConverseTranslator
from aigateway.translators.backends.gemini import (
    GeminiChatTranslator,
    GeminiEmbeddingsTranslator,
)
from aigateway.translators.backends.openai import OpenAIChatTranslator
from aigateway.translators.client_apis.messages import (
    CountTokensTranslator,
    MessagesPassthroughTranslator,
)
from aigateway.translators.client_apis.pivot import PivotTranslator
from aigateway.translators.client_apis.responses import ResponsesPassthroughTranslator
from aigateway.translators.matrix import (
    BackendOptions,
    ClientApi,
    Schema,
    UnsupportedEndpoint,
    route_translators,
)

VERTEX = {"project": "p", "region": "us-central1"}


@pytest.mark.parametrize(
    ("schema", "model", "api", "expected"),
    [
        ("openai", "gpt-4o", "chat_completions", OpenAIChatTranslator),
        ("azure-openai", "gpt-4o", "chat_completions", AzureOpenAITranslator),
        ("aws-bedrock", "anthropic.claude-3", "chat_completions", BedrockConverseTranslator),
        ("anthropic", "claude-3", "chat_completions", AnthropicMessagesTranslator),
        ("gcp-gemini", "gemini-2.5-flash", "chat_completions", GeminiChatTranslator),
        ("gcp-vertex-ai", "gemini-2.0-flash", "chat_completions", GeminiChatTranslator),
        ("gcp-vertex-ai", "claude-3-5-sonnet", "chat_completions", AnthropicMessagesTranslator),
        ("openai", "gpt-4o", "responses", ResponsesPassthroughTranslator),
        ("azure-openai", "gpt-4o", "responses", ResponsesPassthroughTranslator),
        ("aws-bedrock", "anthropic.claude-3", "responses", PivotTranslator),
        ("anthropic", "claude-3", "messages", MessagesPassthroughTranslator),
        ("gcp-vertex-ai", "claude-3-5-sonnet", "messages", MessagesPassthroughTranslator),
        ("gcp-vertex-ai", "gemini-2.0-flash", "messages", PivotTranslator),
        ("openai", "gpt-4o", "messages", PivotTranslator),
        ("anthropic", "claude-3", "count_tokens", CountTokensTranslator),
        ("gcp-gemini", "text-embedding-004", "embeddings", GeminiEmbeddingsTranslator),
        ("gcp-vertex-ai", "text-embedding-005", "embeddings", GeminiEmbeddingsTranslator),
        ("gcp-vertex-ai", "claude-3-5-sonnet", "count_tokens", CountTokensTranslator),
    ],
)
def test_each_pair_has_its_translator(
    schema: Schema, model: str, api: ClientApi, expected: type
) -> None:
    options = BackendOptions(schema=schema, upstream_model=model, api_version="v1", **VERTEX)
    assert isinstance(route_translators(options).translator(api, None), expected)


@pytest.mark.parametrize(
    ("schema", "api", "reason"),
    [
        ("aws-bedrock", "embeddings", "does not support embeddings (its backend's schema is"),
        ("anthropic", "embeddings", "does not support embeddings (its backend's schema is"),
        ("openai", "count_tokens", "cannot count tokens: token counting is Anthropic's"),
    ],
)
def test_an_unsupported_pair_says_why(schema: Schema, api: ClientApi, reason: str) -> None:
    translators = route_translators(BackendOptions(schema=schema, upstream_model="m", **VERTEX))
    assert not translators.supports(api)
    with pytest.raises(UnsupportedEndpoint) as err:
        translators.translator(api)
    assert err.value.reason.startswith(reason)
    assert err.value.reason.endswith(f"{schema})")


def test_the_client_version_reaches_the_messages_passthrough() -> None:
    options = BackendOptions(schema="anthropic", upstream_model="claude-3", anthropic_version="v0")
    payload = {"model": "claude-3", "max_tokens": 1, "messages": []}
    translators = route_translators(options)
    # The client's anthropic-version goes upstream as it is; without one, the backend's.
    assert translators.translator("messages", "v1").request(dict(payload), b"").headers == ()
    with_default = translators.translator("messages", None).request(dict(payload), b"")
    assert with_default.headers == (("anthropic-version", "v0"),)


def test_each_request_gets_a_new_translator() -> None:
    translators = route_translators(BackendOptions(schema="aws-bedrock", upstream_model="m"))
    assert translators.translator("responses") is not translators.translator("responses")


def test_claude_on_vertex_has_no_embeddings_and_gemini_on_vertex_counts_no_tokens() -> None:
    claude = BackendOptions(schema="gcp-vertex-ai", upstream_model="claude-3-5-sonnet", **VERTEX)
    gemini = BackendOptions(schema="gcp-vertex-ai", upstream_model="gemini-2.0-flash", **VERTEX)
    assert not route_translators(claude).supports("embeddings")
    assert not route_translators(gemini).supports("count_tokens")
