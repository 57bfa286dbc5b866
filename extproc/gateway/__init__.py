"""The LLM gateway built on the ext_proc framework: one processor per client API
(:class:`ChatCompletionProcessor`, :class:`EmbeddingsProcessor`, :class:`ResponsesProcessor`,
:class:`MessagesProcessor` and :class:`CountTokensProcessor`, the models list), the
config file and its secrets, backend credentials, and :func:`serve`.

Serve it with your own wrappers around every processor::

    from aigateway.extproc.gateway import serve
    serve("gateway.yaml", wrap=TenantBudget)

or with a processor class of your own for one path (``routes=``); see
``examples/subclass_processor.py``.
"""

from aigateway.extproc.gateway.app import (
    CHAT_COMPLETIONS,
    COUNT_TOKENS,
    DEFAULT_EXTPROC_ADDR,
    DEFAULT_METRICS_ADDR,
    EMBEDDINGS,
    MESSAGES,
    RESPONSES,
    Gateway,
    RouteOverrides,
    ServeOptions,
    StartupError,
    build_router,
    processor_routes,
    run_gateway,
    serve,
)
from aigateway.extproc.gateway.backends import ModelRoute, RoutingTable
from aigateway.extproc.gateway.chat import ChatCompletionProcessor
from aigateway.extproc.gateway.config import (
    ConfigError,
    GatewayConfig,
    ResolvedSecrets,
    load_config,
    load_secrets,
    parse_config,
)
from aigateway.extproc.gateway.embeddings import EmbeddingsProcessor
from aigateway.extproc.gateway.messages import CountTokensProcessor, MessagesProcessor
from aigateway.extproc.gateway.models import MODELS_PATH, ModelsProcessor
from aigateway.extproc.gateway.responses import ResponsesProcessor
from aigateway.extproc.gateway.routed import RoutedProcessor, parse_json_body

__all__ = [
    "CHAT_COMPLETIONS",
    "COUNT_TOKENS",
    "DEFAULT_EXTPROC_ADDR",
    "DEFAULT_METRICS_ADDR",
    "EMBEDDINGS",
    "MESSAGES",
    "MODELS_PATH",
    "RESPONSES",
    "ChatCompletionProcessor",
    "ConfigError",
    "CountTokensProcessor",
    "EmbeddingsProcessor",
    "Gateway",
    "GatewayConfig",
    "MessagesProcessor",
    "ModelRoute",
    "ModelsProcessor",
    "ResolvedSecrets",
    "ResponsesProcessor",
    "RouteOverrides",
    "RoutedProcessor",
    "RoutingTable",
    "ServeOptions",
    "StartupError",
    "build_router",
    "load_config",
    "load_secrets",
    "parse_config",
    "parse_json_body",
    "processor_routes",
    "run_gateway",
    "serve",
]
