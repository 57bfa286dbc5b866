"""Pure format conversion between LLM APIs: bytes and dicts in, bytes and dicts out, no
I/O, no protobuf, no metrics.

A translator serves one request: :meth:`ChatTranslator.request` turns the client's
parsed body into an :class:`UpstreamRequest` for the backend's schema, then
``response_headers`` / ``response_body`` / ``error_body`` turn the backend's answer
back, chunk by chunk, reporting :class:`TokenUsage` as it becomes known. One translator
per backend schema: :class:`OpenAIChatTranslator`, :class:`AzureOpenAITranslator`,
:class:`BedrockConverseTranslator`, :class:`AnthropicMessagesTranslator` (also Claude on Vertex
AI, with :class:`VertexRawPredict`), :class:`GeminiChatTranslator` (the Gemini API and Vertex
AI) and :class:`GeminiEmbeddingsTranslator`.

Shared pieces: :class:`SseDecoder` (server-sent events split anywhere), the OpenAI
error shape (``openai_error_body``), and the JSON codec (``dumps``).
"""

from aigateway.translators.anthropic import AnthropicMessagesTranslator, VertexRawPredict
from aigateway.translators.azure import AzureOpenAIEmbeddingsTranslator, AzureOpenAITranslator
from aigateway.translators.base import (
    ChatTranslator,
    ResponseBodyOutput,
    ResponseHeadersDecision,
    TokenUsage,
    TranslationError,
    UpstreamRequest,
)
from aigateway.translators.bedrock import BedrockConverseTranslator
from aigateway.translators.errors import openai_error, openai_error_body
from aigateway.translators.gemini import (
    GeminiChatTranslator,
    GeminiEmbeddingsTranslator,
    gemini_model_path,
    vertex_model_path,
)
from aigateway.translators.jsoncodec import dumps
from aigateway.translators.openai import OpenAIChatTranslator, OpenAIEmbeddingsTranslator
from aigateway.translators.sse import SseDecoder, SseEvent, encode_sse_event

__all__ = [
    "AnthropicMessagesTranslator",
    "AzureOpenAIEmbeddingsTranslator",
    "AzureOpenAITranslator",
    "BedrockConverseTranslator",
    "ChatTranslator",
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
    "UpstreamRequest",
    "VertexRawPredict",
    "dumps",
    "encode_sse_event",
    "gemini_model_path",
    "openai_error",
    "openai_error_body",
    "vertex_model_path",
]
