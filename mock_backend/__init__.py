"""A deterministic mock of the LLM provider APIs, speaking their real wire formats.

Used as the upstream by the end-to-end tests (through a real Envoy), by ``aigateway up``
(offline demo) and by the benchmarks. See docs/architecture.md, "Mock backend".

- :func:`create_app` builds the aiohttp application (routes in its docstring);
- :func:`run_mock_backend` serves it for the duration of an ``async with`` block;
- :func:`serve_mock_backend` serves it until a stop event (the CLI's entry point).

Replies are deterministic: ``prompt_tokens`` is the number of whitespace-separated
words of the request's text (:mod:`.prompt_words`), the reply is
``x-mock-output-tokens`` (default 8) words of a fixed vocabulary (:mod:`.words`), one
per stream chunk. Request headers steer each response (:mod:`.knobs`).
"""

from __future__ import annotations

from .app import DEFAULT_EMBEDDING_DIMENSIONS, DEFAULT_MODELS, create_app, request_log
from .gcp_tokens import GcpServiceAccount, new_service_account_key
from .knobs import DEFAULT_OUTPUT_TOKENS, Fault
from .request_log import RecordedRequest, RequestLog
from .server import MockBackendServer, run_mock_backend, serve_mock_backend
from .sigv4 import AwsCredentials
from .words import VOCABULARY, reply_pieces, reply_text

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "DEFAULT_MODELS",
    "DEFAULT_OUTPUT_TOKENS",
    "VOCABULARY",
    "AwsCredentials",
    "Fault",
    "GcpServiceAccount",
    "MockBackendServer",
    "RecordedRequest",
    "RequestLog",
    "create_app",
    "new_service_account_key",
    "reply_pieces",
    "reply_text",
    "request_log",
    "run_mock_backend",
    "serve_mock_backend",
]
