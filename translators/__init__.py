"""Pure format conversion between LLM APIs: bytes and dicts in, bytes and dicts out, no
I/O, no protobuf, no metrics (docs/architecture.md, "Layers").

A translator serves one request: :meth:`Translator.request` turns the client's parsed
body into an :class:`UpstreamRequest` for the backend's schema, then
``response_headers`` / ``response_body`` / ``error_body`` turn the backend's answer
back, chunk by chunk, reporting :class:`TokenUsage` as it becomes known.

- ``backends/``: one translator per backend schema, from and to chat completions:
  :class:`OpenAIChatTranslator`, :class:`AzureOpenAITranslator`,
  :class:`BedrockConverseTranslator`, :class:`AnthropicMessagesTranslator` (also Claude
  on Vertex AI, with :class:`VertexRawPredict`), :class:`GeminiChatTranslator` (the
  Gemini API and Vertex AI) and the embeddings translators.
- ``client_apis/``: chat completions (the pivot), the Responses and Messages APIs.
- ``wire/``: SSE (:class:`SseDecoder`), the AWS event stream, the JSON codec
  (``dumps``), the error shapes (``openai_error_body``), content decoding.
- ``matrix``: which translator serves a (client API, backend schema) pair.
"""

from aigateway.translators.backends.anthropic import AnthropicMessagesTranslator, VertexRawPredict
from aigateway.translators.backends.azure import (
    AzureOpenAIEmbeddingsTranslator,
    AzureOpenAITranslator,
)
from aigateway.translators.backends.bedrock import BedrockConverseTranslator
from aigateway.translators.backends.gemini import (
    GeminiChatTranslator,
    GeminiEmbeddingsTranslator,
    gemini_model_path,
    vertex_model_path,
)
from aigateway.translators.backends.openai import OpenAIChatTranslator, OpenAIEmbeddingsTranslator
from aigateway.translators.contract import (
    ResponseBodyOutput,
    ResponseHeadersDecision,
    TokenUsage,
    TranslationError,
    Translator,
    UpstreamRequest,
)
from aigateway.translators.wire.errors import openai_error, openai_error_body
from aigateway.translators.wire.jsoncodec import dumps
from aigateway.translators.wire.sse import SseDecoder, SseEvent, encode_sse_event

__all__ = [
    "AnthropicMessagesTranslator",
    "AzureOpenAIEmbeddingsTranslator",
    "AzureOpenAITranslator",
    "BedrockConverseTranslator",
    "GeminiChatTranslator",
    "GeminiEmbeddingsTranslator",
    "OpenAIChatTranslator",
    "OpenAIEmbeddingsTranslator",
    "ResponseBodyOutput",
    "ResponseHeadersDecision",
    "SseDecoder",
    "SseEvent",
    "TokenUsage",
    "TranslationError",
    "Translator",
    "UpstreamRequest",
    "VertexRawPredict",
    "dumps",
    "encode_sse_event",
    "gemini_model_path",
    "openai_error",
    "openai_error_body",
    "vertex_model_path",
]
