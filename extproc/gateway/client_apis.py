"""Which translator each client API uses on each backend schema (README, "Client APIs"):
the Responses and Messages APIs pass through to the backends that speak them and reach
the others through the backend's chat translator (the pivot)."""

from __future__ import annotations

from collections.abc import Callable

from aigateway.extproc.gateway.config import Backend
from aigateway.translators.anthropic import VertexRawPredict
from aigateway.translators.base import ChatTranslator
from aigateway.translators.bedrock import is_claude
from aigateway.translators.gemini import vertex_model_path
from aigateway.translators.messages import (
    CountTokensTranslator,
    MessagesApi,
    MessagesPassthroughTranslator,
)
from aigateway.translators.messages_request import MessagesOptions
from aigateway.translators.pivot import PivotTranslator
from aigateway.translators.responses import (
    AZURE_RESPONSES_PATH,
    ResponsesApi,
    ResponsesPassthroughTranslator,
)

TranslatorFactory = Callable[[], ChatTranslator]
#: Makes a Messages translator, given the ``anthropic-version`` the client sent (if any).
MessagesTranslatorFactory = Callable[[str | None], ChatTranslator]


def vertex_claude(backend: Backend, upstream_model: str) -> VertexRawPredict | None:
    """Claude on Vertex AI (models named ``claude-*``): the Messages API at rawPredict."""
    if backend.schema_ != "gcp-vertex-ai" or not upstream_model.startswith("claude-"):
        return None
    project, region = backend.project or "", backend.region or ""
    return VertexRawPredict(vertex_model_path(project, region, "anthropic", upstream_model))


def responses_factory(
    backend: Backend, upstream_model: str, chat: TranslatorFactory
) -> TranslatorFactory:
    if backend.schema_ == "openai":
        return lambda: ResponsesPassthroughTranslator(upstream_model)
    if backend.schema_ == "azure-openai":
        # The v1 API: the deployment is the body's model, no api-version.
        return lambda: ResponsesPassthroughTranslator(upstream_model, AZURE_RESPONSES_PATH)
    return lambda: PivotTranslator(chat(), ResponsesApi())


def messages_factory(
    backend: Backend, upstream_model: str, chat: TranslatorFactory
) -> MessagesTranslatorFactory:
    if backend.schema_ == "anthropic":
        version = backend.anthropic_version
        return lambda client_version: MessagesPassthroughTranslator(
            upstream_model, version=version, client_version=client_version
        )
    vertex = vertex_claude(backend, upstream_model)
    if vertex is not None:
        return lambda client_version: MessagesPassthroughTranslator(upstream_model, vertex=vertex)
    # Claude on Bedrock goes through Converse, which takes its cache marks and thinking.
    claude = backend.schema_ == "aws-bedrock" and is_claude(upstream_model)
    options = MessagesOptions(cache_marks=backend.schema_ == "aws-bedrock", thinking=claude)
    return lambda client_version: PivotTranslator(chat(), MessagesApi(options))


def count_tokens_factory(backend: Backend, upstream_model: str) -> MessagesTranslatorFactory | None:
    """Token counting: Anthropic's own endpoint only (``None`` elsewhere)."""
    if backend.schema_ != "anthropic":
        return None
    version = backend.anthropic_version
    return lambda client_version: CountTokensTranslator(
        upstream_model, version=version, client_version=client_version
    )
