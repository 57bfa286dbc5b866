"""Which translator serves a (client API, backend schema) pair: the one place that says so
(docs/architecture.md, "Layers").

The Responses and Messages APIs pass through to the backends that speak them and reach
the others through the backend's chat translator (the pivot). Options are plain values,
not the gateway's config objects; :func:`route_translators` is asked once per route.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aigateway.translators.backends.anthropic import (
    DEFAULT_VERSION,
    AnthropicMessagesTranslator,
    VertexRawPredict,
)
from aigateway.translators.backends.azure import (
    AzureOpenAIEmbeddingsTranslator,
    AzureOpenAITranslator,
)
from aigateway.translators.backends.bedrock import BedrockConverseTranslator, is_claude
from aigateway.translators.backends.gemini import (
    GeminiChatTranslator,
    GeminiEmbeddingsTranslator,
    gemini_model_path,
    vertex_model_path,
)
from aigateway.translators.backends.openai import OpenAIChatTranslator, OpenAIEmbeddingsTranslator
from aigateway.translators.client_apis.messages import (
    CountTokensTranslator,
    MessagesApi,
    MessagesPassthroughTranslator,
)
from aigateway.translators.client_apis.messages_request import MessagesOptions
from aigateway.translators.client_apis.pivot import PivotTranslator
from aigateway.translators.client_apis.responses import (
    AZURE_RESPONSES_PATH,
    ResponsesApi,
    ResponsesPassthroughTranslator,
)
from aigateway.translators.contract import Translator

#: The client APIs a route serves (chat completions is the pivot).
ClientApi = Literal["chat_completions", "embeddings", "responses", "messages", "count_tokens"]
#: The backend schemas (a backend's ``schema:`` in the config).
Schema = Literal[
    "openai", "azure-openai", "aws-bedrock", "anthropic", "gcp-gemini", "gcp-vertex-ai"
]
#: Makes one request's translator, given the client's API version header (Anthropic's
#: ``anthropic-version``), if any.
TranslatorFactory = Callable[[str | None], Translator]


@dataclass(slots=True, frozen=True)
class BackendOptions:
    """What the translators need to know of one model on one backend."""

    schema: Schema
    upstream_model: str
    #: Azure OpenAI's ``api-version`` query parameter.
    api_version: str = ""
    #: The ``anthropic-version`` the gateway sends Anthropic.
    anthropic_version: str = DEFAULT_VERSION
    #: ``max_tokens`` for backends that require it when the client sent none.
    default_max_tokens: int = 4096
    #: Vertex AI's project and region.
    project: str = ""
    region: str = ""


class UnsupportedEndpoint(Exception):
    """The backend has no translator for this client API. ``reason`` completes "The
    model `name` ..." for the client's 400 (code ``unsupported_endpoint``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True, frozen=True)
class RouteTranslators:
    """The translator factories of one route, by client API."""

    factories: dict[ClientApi, TranslatorFactory]
    unsupported: dict[ClientApi, str]

    def translator(self, api: ClientApi, client_version: str | None = None) -> Translator:
        """A new translator for one request; raises :class:`UnsupportedEndpoint`."""
        factory = self.factories.get(api)
        if factory is None:
            raise UnsupportedEndpoint(self.unsupported[api])
        return factory(client_version)

    def supports(self, api: ClientApi) -> bool:
        return api in self.factories


def route_translators(options: BackendOptions) -> RouteTranslators:
    """Every client API's translator factory on one (backend, upstream model)."""
    chat = _chat(options)
    factories: dict[ClientApi, TranslatorFactory] = {
        "chat_completions": lambda _version: chat(),
        "responses": _responses(options, chat),
        "messages": _messages(options, chat),
    }
    unsupported: dict[ClientApi, str] = {}
    embeddings = _embeddings(options)
    if embeddings is not None:
        factories["embeddings"] = embeddings
    else:
        unsupported["embeddings"] = (
            f"does not support embeddings (its backend's schema is {options.schema})"
        )
    if options.schema == "anthropic":
        version, model = options.anthropic_version, options.upstream_model
        factories["count_tokens"] = lambda client_version: CountTokensTranslator(
            model, version=version, client_version=client_version
        )
    elif vertex_claude(options) is not None:
        model = options.upstream_model
        counter = vertex_model_path(options.project, options.region, "anthropic", "count-tokens")
        factories["count_tokens"] = lambda _version: CountTokensTranslator(
            model, vertex_path=counter + ":rawPredict"
        )
    else:
        unsupported["count_tokens"] = (
            "cannot count tokens: token counting is Anthropic's (and Claude's on Vertex AI)"
            f" (its backend's schema is {options.schema})"
        )
    return RouteTranslators(factories, unsupported)


def vertex_claude(options: BackendOptions) -> VertexRawPredict | None:
    """Claude on Vertex AI (models named ``claude-*``): the Messages API at rawPredict
    (docs/client-apis.md, "Endpoints and backend schemas")."""
    if options.schema != "gcp-vertex-ai" or not options.upstream_model.startswith("claude-"):
        return None
    path = vertex_model_path(options.project, options.region, "anthropic", options.upstream_model)
    return VertexRawPredict(path)


def _chat(options: BackendOptions) -> Callable[[], Translator]:
    schema, model = options.schema, options.upstream_model
    if schema == "azure-openai":
        api_version = options.api_version
        return lambda: AzureOpenAITranslator(model, api_version)
    if schema == "aws-bedrock":
        return lambda: BedrockConverseTranslator(model)
    max_tokens = options.default_max_tokens
    if schema == "anthropic":
        version = options.anthropic_version
        return lambda: AnthropicMessagesTranslator(
            model, version=version, default_max_tokens=max_tokens
        )
    if schema == "gcp-gemini":
        path = gemini_model_path(model)
        return lambda: GeminiChatTranslator(path)
    if schema == "gcp-vertex-ai":
        vertex = vertex_claude(options)
        if vertex is not None:
            return lambda: AnthropicMessagesTranslator(
                model, default_max_tokens=max_tokens, vertex=vertex
            )
        path = vertex_model_path(options.project, options.region, "google", model)
        return lambda: GeminiChatTranslator(path)
    return lambda: OpenAIChatTranslator(model)


def _embeddings(options: BackendOptions) -> TranslatorFactory | None:
    model = options.upstream_model
    if options.schema == "openai":
        return lambda _version: OpenAIEmbeddingsTranslator(model)
    if options.schema == "azure-openai":
        api_version = options.api_version
        return lambda _version: AzureOpenAIEmbeddingsTranslator(model, api_version)
    if options.schema == "gcp-gemini":
        path = gemini_model_path(model)
        return lambda _version: GeminiEmbeddingsTranslator(path, model)
    if options.schema == "gcp-vertex-ai" and vertex_claude(options) is None:
        path = vertex_model_path(options.project, options.region, "google", model)
        return lambda _version: GeminiEmbeddingsTranslator(path, model, vertex=True)
    # Bedrock Converse, Anthropic Messages and Claude on Vertex AI: no embeddings
    return None


def _responses(options: BackendOptions, chat: Callable[[], Translator]) -> TranslatorFactory:
    model = options.upstream_model
    if options.schema == "openai":
        return lambda _version: ResponsesPassthroughTranslator(model)
    if options.schema == "azure-openai":
        # The v1 API: the deployment is the body's model, no api-version.
        return lambda _version: ResponsesPassthroughTranslator(model, AZURE_RESPONSES_PATH)
    return lambda _version: PivotTranslator(chat(), ResponsesApi())


def _messages(options: BackendOptions, chat: Callable[[], Translator]) -> TranslatorFactory:
    model = options.upstream_model
    if options.schema == "anthropic":
        version = options.anthropic_version
        return lambda client_version: MessagesPassthroughTranslator(
            model, version=version, client_version=client_version
        )
    vertex = vertex_claude(options)
    if vertex is not None:
        return lambda _version: MessagesPassthroughTranslator(model, vertex=vertex)
    # Claude on Bedrock goes through Converse, which takes its cache marks and thinking.
    bedrock = options.schema == "aws-bedrock"
    messages = MessagesOptions(cache_marks=bedrock, thinking=bedrock and is_claude(model))
    return lambda _version: PivotTranslator(chat(), MessagesApi(messages))
