"""OpenAI chat completions and embeddings to Azure OpenAI.

Azure speaks OpenAI's wire format on a different path: the deployment picks the model
(the body's ``model`` is ignored) and ``api-version`` is required. Everything else,
including the usage handling of streams, is the OpenAI translator's. The ``api-key``
header is the processor's job (backend auth).

``stream_options`` (which the OpenAI translator adds to learn a stream's usage) needs
an ``api-version`` of 2024-09-01-preview, 2024-10-21 (GA) or later.
"""

from __future__ import annotations

from urllib.parse import quote

from aigateway.translators.backends.openai import OpenAIChatTranslator, OpenAIEmbeddingsTranslator


def azure_path(deployment: str, api_version: str, operation: str = "chat/completions") -> str:
    """``/openai/deployments/{deployment}/{operation}?api-version=...``, escaped."""
    if not deployment:
        raise ValueError("an Azure OpenAI deployment name is required")
    if not api_version:
        raise ValueError("an Azure OpenAI api-version is required")
    return (
        f"/openai/deployments/{quote(deployment, safe='')}/{operation}"
        f"?api-version={quote(api_version, safe='')}"
    )


class AzureOpenAITranslator(OpenAIChatTranslator):
    """``Translator`` for ``schema: azure-openai``: the OpenAI one on Azure's path."""

    __slots__ = ()

    def __init__(self, deployment: str, api_version: str) -> None:
        super().__init__(backend_model=None, path=azure_path(deployment, api_version))


class AzureOpenAIEmbeddingsTranslator(OpenAIEmbeddingsTranslator):
    """Embeddings on an Azure OpenAI deployment."""

    __slots__ = ()

    def __init__(self, deployment: str, api_version: str) -> None:
        super().__init__(backend_model=None, path=azure_path(deployment, api_version, "embeddings"))
