"""The server's per-message path: ``ExternalProcessorServicer`` driven with the test
suite's in-memory Envoy (``tests/extproc/fake_envoy.py``), bare and instrumented, and
``InstrumentedProcessor`` alone (its phases driven with no event loop)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2 as pb,
)
from aigateway.extproc.framework.processor import Headers, Outcome
from aigateway.extproc.framework.server import ExternalProcessorServicer
from aigateway.extproc.gateway.app import build_attempt_router, build_router, build_telemetry
from aigateway.extproc.gateway.attempts import (
    ANSWERED_BY_HEADER,
    ATTEMPT_BACKEND_HEADER,
    CLIENT_HEADERS_NAMESPACE,
    CLIENT_NAMESPACE,
    RestingBackends,
)
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.chat import ChatCompletionProcessor
from aigateway.extproc.gateway.config import (
    MetricsOptions,
    ModelPrice,
    ResolvedSecrets,
    parse_config,
)
from aigateway.instrumentation.instrumented import Instrumentation
from benchmarks.micro.conftest import run_now
from benchmarks.micro.streams import CHAT_COMPLETION, chat_request, openai_stream_events
from tests.extproc.framework.fake_envoy import (
    Conversation,
    FakeContext,
    request_body,
    request_headers,
    response_body,
    response_headers,
)

CONFIG = parse_config(
    {
        "backends": [
            {
                "name": "static",
                "schema": "openai",
                "endpoint": "http://127.0.0.1:8000",
                "auth": {"api_key": {"value": "sk-bench"}},
            }
        ],
        "models": [{"name": "gpt-4o-mini", "backend": "static"}],
    }
)
TABLE = RoutingTable(CONFIG, ResolvedSecrets(CONFIG, Path()))
#: Every telemetry option on: both sets of families, a header label, a price.
CONFIG_BOTH = CONFIG.model_copy(
    update={
        "metrics": MetricsOptions.model_validate(
            {
                "schema": "both",
                "labels_from_headers": [
                    {"header": "x-tenant-id", "label": "tenant", "values": ["acme", "globex"]}
                ],
            }
        ),
        "models": [
            CONFIG.models[0].model_copy(
                update={"price": ModelPrice(input=0.15, output=0.6, cached_input=0.075)}
            )
        ],
    }
)
TABLE_BOTH = RoutingTable(CONFIG_BOTH, ResolvedSecrets(CONFIG_BOTH, Path()))
CLIENT_HEADERS = [("authorization", "Bearer client"), ("user-agent", "OpenAI/Python 1.54.0")]
REQUEST = [
    request_headers(extra=CLIENT_HEADERS),
    request_body(chat_request()),
    response_headers(200, "application/json"),
    response_body(CHAT_COMPLETION),
]
# The processor asks upstream for usage, so the upstream's stream carries it.
EVENTS = openai_stream_events(include_usage=True)
CHUNK = response_body(EVENTS[5], end_of_stream=False)


def instrumentation(both: bool = False) -> Instrumentation:
    return build_telemetry((TABLE_BOTH if both else TABLE).config).instrumentation


def servicer(instrumented: bool) -> ExternalProcessorServicer:
    wrap = instrumentation().wrap if instrumented else None
    return ExternalProcessorServicer(build_router(TABLE, instrument=wrap))


VARIANTS = pytest.mark.parametrize("instrumented", [False, True], ids=["bare", "instrumented"])
#: The wrapper alone, also with every telemetry option on (schema both, a header label,
#: a price): the difference to ``bare`` is the wrapper's whole cost per request.
WRAPPER_VARIANTS = pytest.mark.parametrize(
    "variant", ["bare", "instrumented", "both"], ids=["bare", "instrumented", "both"]
)


def _messages(*messages: Any) -> FakeContext:
    context = FakeContext()
    for message in (*messages, grpc.aio.EOF):
        context.inbox.put_nowait(message)
    return context


@VARIANTS
def test_servicer_non_streamed_request(
    benchmark: Any, loop: asyncio.AbstractEventLoop, instrumented: bool
) -> None:
    """One whole non-streamed request through ``Process``: 4 messages in, 4 answers out,
    end of stream (the inbox is filled up front, so the harness costs next to nothing)."""
    service = servicer(instrumented)

    def one_request() -> None:
        context = _messages(*REQUEST)
        loop.run_until_complete(service.Process(None, context))
        assert context.outbox.qsize() == len(REQUEST)

    benchmark(one_request)


STREAM = [
    request_headers(extra=CLIENT_HEADERS),
    request_body(chat_request(stream=True)),
    response_headers(200, "text/event-stream"),
    *(response_body(e, end_of_stream=False) for e in EVENTS),
    response_body(b"", end_of_stream=True),
]


@VARIANTS
def test_servicer_streamed_response(
    benchmark: Any, loop: asyncio.AbstractEventLoop, instrumented: bool
) -> None:
    """A whole streamed request (64 tokens: 68 SSE events, a body chunk each, then the
    end of stream); per chunk: subtract the non-streamed request, divide by 69."""
    service = servicer(instrumented)

    def one_stream() -> None:
        context = _messages(*STREAM)
        loop.run_until_complete(service.Process(None, context))
        assert context.outbox.qsize() == len(STREAM)

    benchmark(one_stream)


@VARIANTS
def test_servicer_streamed_chunk(
    benchmark: Any, loop: asyncio.AbstractEventLoop, instrumented: bool
) -> None:
    """One streamed body chunk (an SSE event) on a stream already switched to STREAMED,
    one message at a time the way Envoy sends them (includes the fake Envoy's own cost)."""
    service = servicer(instrumented)
    conv = Conversation(service)

    async def start() -> None:
        await conv.send(request_headers(extra=CLIENT_HEADERS))
        await conv.send(request_body(chat_request(stream=True)))
        answer = await conv.send(response_headers(200, "text/event-stream"))
        assert answer.HasField("mode_override")

    loop.run_until_complete(start())
    benchmark(lambda: loop.run_until_complete(conv.send(CHUNK)))
    loop.run_until_complete(conv.cancel())


def _lifecycle(processor: Any) -> None:
    run_now(processor.on_request_headers(HEADERS))
    run_now(processor.on_request_body(BODY, True))
    run_now(processor.on_response_headers(RESPONSE_HEADERS))
    run_now(processor.on_response_body(CHAT_COMPLETION, True))
    run_now(processor.on_stream_end(Outcome(response_complete=True, status=200)))


HEADERS = Headers(
    [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-tenant-id", "acme"),
    ]
)
BODY = chat_request()
RESPONSE_HEADERS = Headers([(":status", "200"), ("content-type", "application/json")])


@WRAPPER_VARIANTS
def test_processor_lifecycle(benchmark: Any, variant: str) -> None:
    """A non-streamed request through the chat processor's phases, without the server:
    the difference to ``bare`` is InstrumentedProcessor's whole cost per request."""
    inst = instrumentation(both=variant == "both")
    table = TABLE_BOTH if variant == "both" else TABLE

    def one() -> None:
        processor = ChatCompletionProcessor(table)
        _lifecycle(processor if variant == "bare" else inst.wrap(processor))

    benchmark(one)


@WRAPPER_VARIANTS
def test_processor_streamed_chunk(benchmark: Any, variant: str) -> None:
    """One streamed chunk through the processor's ``on_response_body``."""
    processor: Any = ChatCompletionProcessor(TABLE_BOTH if variant == "both" else TABLE)
    if variant != "bare":
        processor = instrumentation(both=variant == "both").wrap(processor)
    run_now(processor.on_request_headers(HEADERS))
    run_now(processor.on_request_body(chat_request(stream=True), True))
    sse = Headers([(":status", "200"), ("content-type", "text/event-stream")])
    run_now(processor.on_response_headers(sse))
    chunk = EVENTS[5]
    benchmark(lambda: run_now(processor.on_response_body(chunk, False)))


# -- a model with several backends (docs/architecture.md, "Routing over several backends")

SEVERAL_CONFIG = parse_config(
    {
        "backends": [
            {
                "name": name,
                "schema": "openai",
                "endpoint": "http://127.0.0.1:8000",
                "auth": {"api_key": {"value": "sk-bench"}},
            }
            for name in ("static", "static-b")
        ],
        "models": [
            {
                "name": "gpt-4o-mini",
                "backends": [{"backend": "static"}, {"backend": "static-b", "priority": 1}],
            }
        ],
    }
)
SEVERAL_TABLE = RoutingTable(SEVERAL_CONFIG, ResolvedSecrets(SEVERAL_CONFIG, Path()))
#: The listener's side: routed to the model's cluster, the answer names its backend.
SEVERAL_REQUEST = [
    request_headers(extra=CLIENT_HEADERS),
    request_body(chat_request()),
    response_headers(200, "application/json", extra=[(ANSWERED_BY_HEADER, "static-b")]),
    response_body(CHAT_COMPLETION),
]
ATTEMPT_HEADERS = [
    ("user-agent", "OpenAI/Python 1.54.0"),
    ("x-ai-gateway-model", "gpt-4o-mini"),
]


def _attempt_headers() -> pb.ProcessingRequest:
    """An attempt's request headers, with the client's request the listener published."""
    message = request_headers(extra=[*ATTEMPT_HEADERS, (ATTEMPT_BACKEND_HEADER, "static")])
    forwarded = message.metadata_context.filter_metadata
    forwarded[CLIENT_NAMESPACE].update({"path": "/v1/chat/completions"})
    forwarded[CLIENT_HEADERS_NAMESPACE].update({"content-type": "application/json"})
    return message


#: One attempt in the upstream filter chain: translated for the backend Envoy picked.
ATTEMPT = [
    _attempt_headers(),
    request_body(chat_request()),
    response_headers(200, "application/json"),
]


def test_servicer_several_backends_listener(
    benchmark: Any, loop: asyncio.AbstractEventLoop
) -> None:
    """The listener's processor of a request to a model with several backends
    (instrumented): what a one-backend request costs, plus the answer's translator made
    at the response headers; each attempt adds ``test_servicer_attempt``."""
    service = ExternalProcessorServicer(
        build_router(
            SEVERAL_TABLE, instrument=build_telemetry(SEVERAL_TABLE.config).instrumentation.wrap
        )
    )

    def one_request() -> None:
        context = _messages(*SEVERAL_REQUEST)
        loop.run_until_complete(service.Process(None, context))
        assert context.outbox.qsize() == len(SEVERAL_REQUEST)

    benchmark(one_request)


def test_servicer_attempt(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """One attempt's processor (request headers, buffered body, response headers)."""
    service = ExternalProcessorServicer(build_attempt_router(SEVERAL_TABLE, RestingBackends()))

    def one_attempt() -> None:
        context = _messages(*ATTEMPT)
        loop.run_until_complete(service.Process(None, context))
        assert context.outbox.qsize() == len(ATTEMPT)

    benchmark(one_attempt)
