"""The ext_proc gRPC server: turns Envoy's messages into Processor calls and back.

It owns the protocol rules (docs/architecture.md, "Protocol rules"): one response per
message, in order, of the matching type; header values read from ``raw_value`` and
written only there; ``content-length`` kept true when a buffered body is replaced;
``clear_route_cache`` only in the request direction; streamed responses switched with
``mode_override`` and stripped of ``content-length``; errors before the response is
committed become an immediate error reply (written by the router's ``ErrorFormatter``),
after it an aborted stream; ``on_stream_end`` exactly once; a result field Envoy would
not honour in its phase is a :class:`ResultError`. :func:`_answer` builds every answer
to a headers or body message, :func:`_immediate` every immediate response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2_grpc

from aigateway.extproc.framework._protos.envoy.config.core.v3 import base_pb2
from aigateway.extproc.framework._protos.envoy.extensions.filters.http.ext_proc.v3 import (
    processing_mode_pb2,
)
from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2 as pb,
)
from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2_grpc as pb_grpc,
)
from aigateway.extproc.framework.health import SERVING, HealthService
from aigateway.extproc.framework.memory import release_freed_memory
from aigateway.extproc.framework.processor import (
    CONTINUE,
    LOCAL_REPLY_DETAILS_PREFIX,
    Headers,
    ImmediateResponse,
    LocalError,
    Outcome,
    Processor,
    Result,
)
from aigateway.extproc.framework.router import Router

log = logging.getLogger("aigateway.server")

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
#: Large enough for big buffered bodies (images, long contexts) in one message.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_STREAMED_RESPONSE = processing_mode_pb2.ProcessingMode(
    response_body_mode=processing_mode_pb2.ProcessingMode.STREAMED
)
_EMPTY_TRAILERS = pb.TrailersResponse()
_BUFFERED = processing_mode_pb2.ProcessingMode.BUFFERED
_PROCESSOR_ERROR = LOCAL_REPLY_DETAILS_PREFIX + "processor_error"
#: A body from this size on is handled in its turn (:class:`LargeBodyTurns`); below it,
#: parsing takes a few milliseconds at most.
LARGE_BODY_BYTES = 1024 * 1024


#: How long after the last large body's stream ends freed memory goes back to the system:
#: a burst keeps its heap for reuse, a quiet processor gives it back.
TRIM_DELAY_SECONDS = 0.5


class LargeBodyTurns:
    """Large bodies take turns on the event loop, each after the loop has polled again,
    and once the last stream holding one ends, the memory they took goes back to the
    system (docs/reliability.md, "Large bodies"). Parsing one 30 MB body holds the loop
    for ~0.1 s; bodies that arrive together used to run back to back, and every small
    request's messages waited behind all of them (benchmarks/NOTES.md, "Large bodies")."""

    __slots__ = ("_lock", "_streams", "_trim")

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._streams = 0
        self._trim: asyncio.TimerHandle | None = None

    async def wait(self) -> None:
        """Returns when it is this body's turn: the previous large body has started and
        the loop has since served what was waiting (the lock wakes one waiter per pass)."""
        async with self._lock:
            await asyncio.sleep(0)

    def hold(self) -> None:
        """A stream got a large body."""
        self._streams += 1
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None

    def release(self) -> None:
        """A stream that got a large body ended."""
        self._streams -= 1
        if not self._streams:
            loop = asyncio.get_running_loop()
            self._trim = loop.call_later(TRIM_DELAY_SECONDS, self._release_memory, loop)

    def _release_memory(self, loop: asyncio.AbstractEventLoop) -> None:
        self._trim = None
        with contextlib.suppress(RuntimeError):  # the loop is shutting down: no matter
            loop.run_in_executor(None, release_freed_memory)


def add_server_port(
    server: grpc.aio.Server,
    address: str,
    credentials: grpc.ServerCredentials | None,
    binder: PortBinder,
) -> int:
    """Have ``server`` listen on a gRPC address, over TLS when given ``credentials``;
    returns the port, or raises :class:`BindError` with the reason ``binder`` finds."""
    if credentials is not None:
        return binder(lambda: server.add_secure_port(address, credentials), address)
    return binder(lambda: server.add_insecure_port(address), address)


class BindError(OSError):
    """The server cannot listen on an address; ``reason`` says why in a few words."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


#: Runs ``add_port``'s grpc call (``add``) for ``address``: returns the port, or raises
#: :class:`BindError`. ``ops/logs.py`` has one that says why, from grpc's own log line.
PortBinder = Callable[[Callable[[], int], str], int]


def bind_port(add: Callable[[], int], address: str) -> int:
    """The default :data:`PortBinder`: grpc says only that it failed."""
    try:
        return add()
    except RuntimeError:
        raise BindError(address, "cannot listen there") from None


class ResultError(ValueError):
    """A :class:`Result` asks for what Envoy does not do in that phase (a processor bug,
    answered like any exception in a phase rather than dropped)."""


class _Abort(Exception):
    """The response is committed; only resetting the stream is left."""


@dataclass(slots=True, frozen=True)
class _Phase:
    """One kind of message Envoy sends and the answer it takes."""

    #: The ``ProcessingResponse`` field of the answer (the request's own name).
    name: str
    #: The request direction: only there does ``clear_route_cache`` act.
    request: bool
    #: A headers message: a body set here replaces with ``CONTINUE_AND_REPLACE``.
    headers: bool
    #: The answer to :data:`CONTINUE`, built once and never mutated.
    cont: pb.ProcessingResponse


_REQUEST_HEADERS = _Phase(
    "request_headers", True, True, pb.ProcessingResponse(request_headers=pb.HeadersResponse())
)
_REQUEST_BODY = _Phase(
    "request_body", True, False, pb.ProcessingResponse(request_body=pb.BodyResponse())
)
_RESPONSE_HEADERS = _Phase(
    "response_headers", False, True, pb.ProcessingResponse(response_headers=pb.HeadersResponse())
)
_RESPONSE_BODY = _Phase(
    "response_body", False, False, pb.ProcessingResponse(response_body=pb.BodyResponse())
)


def _headers(msg: pb.HttpHeaders, metadata: base_pb2.Metadata | None = None) -> Headers:
    pairs = []
    for h in msg.headers.headers:
        raw = h.raw_value  # each read of a upb field builds a new bytes object
        pairs.append((h.key, raw.decode("latin-1") if raw else h.value))
    forwarded = None
    if metadata is not None:  # only where Envoy forwards some
        forwarded = {
            ns: {key: _plain(value) for key, value in fields.fields.items()}
            for ns, fields in metadata.filter_metadata.items()
        }
    return Headers(pairs, end_of_stream=msg.end_of_stream, metadata=forwarded)


def _plain(value: struct_pb2.Value) -> Any:
    """A ``Struct`` value as Python (a third of ``json_format.MessageToDict``'s cost)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: _plain(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    return None


def _mutate_headers(
    mutation: pb.HeaderMutation,
    set_headers: tuple[tuple[str, str], ...],
    remove_headers: tuple[str, ...],
) -> None:
    # Filled in place: an option built on its own and copied in costs 4x as much
    # (benchmarks/NOTES.md).
    add = mutation.set_headers.add
    for name, value in set_headers:
        header = add(append_action=_OVERWRITE).header
        header.key = name
        header.raw_value = value.encode("latin-1")
    if remove_headers:
        mutation.remove_headers.extend(remove_headers)


def _set_metadata(out: struct_pb2.Struct, metadata: Mapping[str, Mapping[str, Any]]) -> None:
    """Writes ``metadata`` into ``out`` (what ``Struct.update`` does, at a third of the
    cost: it runs on every answer that carries metadata, see benchmarks/NOTES.md)."""
    namespaces = out.fields
    for namespace, fields in metadata.items():
        struct = namespaces[namespace].struct_value
        struct.SetInParent()  # an empty namespace is still published
        values = struct.fields
        for key, value in fields.items():
            # Strings and numbers (nearly every fact) by exact type, without a call.
            kind = type(value)
            if kind is str:
                values[key].string_value = value
            elif kind is int or kind is float:
                values[key].number_value = value
            else:
                _set_value(values[key], value)


def _set_value(out: struct_pb2.Value, value: Any) -> None:
    if isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):  # before int: bool is an int
        out.bool_value = value
    elif isinstance(value, int | float):
        out.number_value = value
    elif value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, Mapping):
        out.struct_value.update(value)
    else:
        out.list_value.extend(value)


def _publish(response: pb.ProcessingResponse, metadata: Mapping[str, Mapping[str, Any]]) -> None:
    _set_metadata(response.dynamic_metadata, metadata)


def _check(phase: _Phase, result: Result, streamed: bool) -> None:
    """Raises :class:`ResultError` for a field Envoy would not honour in ``phase``."""
    if result.clear_route_cache and not phase.request:
        raise ResultError(f"clear_route_cache in {phase.name}: Envoy routes only on requests")
    if result.stream_response_body and phase is not _RESPONSE_HEADERS:
        raise ResultError(
            f"stream_response_body in {phase.name}: only response headers can switch it"
        )
    if result.end_of_response and phase is not _RESPONSE_BODY:
        raise ResultError(f"end_of_response in {phase.name}: it marks a response body chunk")
    if phase is _RESPONSE_HEADERS and result.stream_response_body and result.body is not None:
        raise ResultError("a body set at response headers cannot also be streamed")
    if streamed and phase is _RESPONSE_BODY and (result.set_headers or result.remove_headers):
        raise ResultError("a streamed chunk cannot change headers the client already has")


def _answer(
    phase: _Phase, result: Result, *, buffered: bool, stream: bool = False
) -> pb.ProcessingResponse:
    """The one place the answer to a headers or body message is built from a result
    (``buffered``: the body is whole, so a replaced one gets its ``content-length``;
    ``stream``: switch the response body to streamed)."""
    response = pb.ProcessingResponse()
    answer = getattr(response, phase.name)
    answer.SetInParent()
    common = answer.response
    set_headers, remove_headers, body = result.set_headers, result.remove_headers, result.body
    if body is not None:
        if buffered:
            set_headers = (*set_headers, ("content-length", str(len(body))))
        if body:
            common.body_mutation.body = body
        else:
            common.body_mutation.clear_body = True
        if phase.headers:
            common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
    if stream:
        remove_headers = (*remove_headers, "content-length")
        response.mode_override.CopyFrom(_STREAMED_RESPONSE)
    if set_headers or remove_headers:
        _mutate_headers(common.header_mutation, set_headers, remove_headers)
    if result.clear_route_cache:
        common.clear_route_cache = True
    if result.dynamic_metadata:
        _publish(response, result.dynamic_metadata)
    return response


def _immediate(
    status: int,
    content_type: str,
    body: bytes,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    details: str,
    metadata: Mapping[str, Mapping[str, Any]] | None = None,
) -> pb.ProcessingResponse:
    """The one place an immediate response is built."""
    response = pb.ProcessingResponse()
    reply = response.immediate_response
    reply.status.code = status
    _mutate_headers(reply.headers, (("content-type", content_type), *headers), ())
    reply.body = body
    reply.details = details
    if metadata:
        _publish(response, metadata)
    return response


class _Stream:
    """The state of one ext_proc stream (one HTTP request)."""

    __slots__ = (
        "committed",
        "error",
        "held",
        "large",
        "local_reply",
        "path",
        "processor",
        "request_id",
        "response_complete",
        "router",
        "status",
        "streamed",
        "turns",
    )

    def __init__(self, router: Router, turns: LargeBodyTurns) -> None:
        self.router = router
        self.turns = turns
        self.large = False  # holds a large body (LargeBodyTurns.hold)
        self.processor: Processor | None = None
        self.path = ""
        self.request_id = "-"
        self.status: int | None = None
        self.streamed = False
        self.committed = False  # response headers have gone to the client
        self.response_complete = False
        self.local_reply = False
        self.error: BaseException | None = None
        #: A refusal of the request headers, answered once the body has arrived.
        self.held: ImmediateResponse | None = None

    async def handle(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse | None:
        kind = request.WhichOneof("request")
        try:
            # The dispatch is inline: a coroutine more per message costs every chunk.
            if kind == "request_headers":
                forwarded = (
                    request.metadata_context if request.HasField("metadata_context") else None
                )
                headers = _headers(request.request_headers, forwarded)
                self.request_id = headers.get("x-request-id", "-") or "-"
                if self.processor is None:
                    self.path = self.router.path_of(headers)
                    self.processor = self.router.create(self.path)
                try:
                    result = await self.processor.on_request_headers(headers)
                except ImmediateResponse as reply:
                    if (
                        headers.end_of_stream
                        or request.protocol_config.request_body_mode != _BUFFERED
                    ):
                        raise
                    # A reply before the upload ends reaches an HTTP/2 client as a reset
                    # stream, the answer unread: given once Envoy has the whole body.
                    self.held = reply
                    return _REQUEST_HEADERS.cont
                return self._answer(_REQUEST_HEADERS, result)
            processor = self.processor
            if processor is None:
                if kind != "response_headers":  # Envoy sends nothing else first
                    raise RuntimeError(f"ext_proc message {kind!r} before request headers")
                # Envoy's own reply to a request it refused before any filter saw it (no
                # Host, a fragment in the path): the fallback's, so it is counted once.
                processor = self.processor = self.router.create(self.path)
            if kind == "response_body":  # first: every streamed chunk
                body = request.response_body
                data = body.body
                if len(data) >= LARGE_BODY_BYTES:
                    await self._large_turn()
                result = await processor.on_response_body(data, body.end_of_stream)
                if body.end_of_stream or result.end_of_response:
                    self.response_complete = True
                if result is CONTINUE:  # most streamed chunks: no call more than needed
                    return _RESPONSE_BODY.cont
                return self._answer(_RESPONSE_BODY, result)
            if kind == "request_body":
                if self.held is not None:
                    raise self.held
                body = request.request_body
                data = body.body
                if len(data) >= LARGE_BODY_BYTES:
                    await self._large_turn()
                result = await processor.on_request_body(data, body.end_of_stream)
                return self._answer(_REQUEST_BODY, result)
            if kind == "response_headers":
                headers = _headers(request.response_headers)
                self.status = headers.status
                result = await processor.on_response_headers(headers)
                if headers.end_of_stream:
                    self.response_complete = True
                return self._answer(_RESPONSE_HEADERS, result, end_of_stream=headers.end_of_stream)
            if kind == "request_trailers":
                return pb.ProcessingResponse(request_trailers=_EMPTY_TRAILERS)
            if kind == "response_trailers":
                self.response_complete = True
                return pb.ProcessingResponse(response_trailers=_EMPTY_TRAILERS)
            log.warning("request %s: ignoring unknown ext_proc message %r", self.request_id, kind)
            return None
        except ImmediateResponse as reply:
            if self.committed:
                log.warning(
                    "request %s: immediate response %d after the response was committed;"
                    " resetting the stream",
                    self.request_id,
                    reply.status,
                )
                raise _Abort from reply
            self._ends_locally(reply.status)
            body = reply.body
            if body is None:  # an error no processor wrote: in the application's format
                error = reply.local_error or LocalError(reply.status, "")
                content_type, body = self.router.errors(error, self.path)
                reply.write(content_type, body)
            return _immediate(
                reply.status,
                reply.content_type,
                body,
                headers=reply.headers,
                details=reply.details,
                metadata=reply.dynamic_metadata,
            )
        except Exception as exc:
            if self.error is None:
                self.error = exc
            log.exception("request %s: processor failed in %s", self.request_id, kind)
            if self.committed:
                raise _Abort from exc
            self._ends_locally(500)
            # The exception text may hold anything (even credentials): the client gets a
            # generic message and the request id to find the log line.
            message = f"The gateway failed to process the request (request id {self.request_id})."
            content_type, body = self.router.errors(
                LocalError(500, message, code="internal_error"), self.path
            )
            return _immediate(500, content_type, body, details=_PROCESSOR_ERROR)

    def _ends_locally(self, status: int) -> None:
        self.local_reply = True
        self.response_complete = True
        self.status = status

    async def _large_turn(self) -> None:
        if not self.large:
            self.large = True
            self.turns.hold()
        await self.turns.wait()

    def _answer(
        self, phase: _Phase, result: Result, *, end_of_stream: bool = False
    ) -> pb.ProcessingResponse:
        if result is CONTINUE:
            return phase.cont
        streamed = self.streamed
        stream = False
        # One test on the hot path (a streamed chunk sets none of these).
        if (
            result.clear_route_cache
            or result.stream_response_body
            or result.end_of_response
            or (streamed and (result.set_headers or result.remove_headers))
        ):
            _check(phase, result, streamed)
            # No body follows headers that end the stream: nothing to switch to streamed.
            stream = result.stream_response_body and not end_of_stream
            if stream:
                self.streamed = self.committed = True
        return _answer(
            phase, result, buffered=not (streamed and phase is _RESPONSE_BODY), stream=stream
        )

    async def end(self, cancelled: bool) -> None:
        processor = self.processor
        if processor is None:
            return
        outcome = Outcome(
            response_complete=self.response_complete,
            status=self.status,
            local_reply=self.local_reply,
            error=self.error,
            cancelled=cancelled and not self.response_complete,
        )
        try:
            await processor.on_stream_end(outcome)
        except Exception:
            log.exception("request %s: on_stream_end failed", self.request_id)
        log.debug("request %s: stream ended (%s)", self.request_id, outcome)


#: The gRPC metadata key that names the Envoy filter chain a stream comes from, for an
#: ext_proc filter configured with ``grpc_service.initial_metadata`` (a cluster's upstream
#: filter chain, say); streams without it belong to the default router.
CHAIN_METADATA_KEY = "x-extproc-chain"


class ExternalProcessorServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """``envoy.service.ext_proc.v3.ExternalProcessor`` over a :class:`Router`, and over
    one router per other filter chain named in ``chains`` (see
    :data:`CHAIN_METADATA_KEY`)."""

    def __init__(self, router: Router, chains: Mapping[str, Router] | None = None) -> None:
        self.router = router
        self.chains = dict(chains or {})
        #: Streams in flight (for draining and tests).
        self.active = 0
        self.turns = LargeBodyTurns()

    def _router(self, context: grpc.aio.ServicerContext[Any, Any]) -> Router:
        if self.chains:
            for key, value in context.invocation_metadata() or ():
                if key == CHAIN_METADATA_KEY:
                    chain = self.chains.get(value if isinstance(value, str) else value.decode())
                    if chain is not None:
                        return chain
        return self.router

    async def Process(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        stream = _Stream(self._router(context), self.turns)
        self.active += 1
        cancelled = True
        try:
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                response = await stream.handle(request)
                if response is not None:
                    await context.write(response)
            cancelled = False
        except _Abort:
            cancelled = False
            await context.abort(grpc.StatusCode.INTERNAL, "aigateway: processor failed")
        finally:
            self.active -= 1
            if stream.large:
                self.turns.release()
            await stream.end(cancelled)


class ExtProcServer:
    """A ``grpc.aio`` server with the ext_proc and health services."""

    def __init__(
        self,
        router: Router,
        *,
        options: list[tuple[str, Any]] | None = None,
        binder: PortBinder = bind_port,
        chains: Mapping[str, Router] | None = None,
    ) -> None:
        self.servicer = ExternalProcessorServicer(router, chains)
        self.binder = binder
        self.health = HealthService()
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                *(options or []),
            ]
        )
        pb_grpc.add_ExternalProcessorServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)

    def add_port(self, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
        """Listen on a gRPC address (``host:port`` or ``unix:path``); returns the port.

        Raises :class:`BindError` when it cannot, with the reason the server's
        :data:`PortBinder` finds."""
        return add_server_port(self.server, address, credentials, self.binder)

    async def start(self) -> None:
        """Start accepting; health reports SERVING for ext_proc."""
        await self.server.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, SERVING)

    async def stop(self, drain_timeout: float) -> None:
        """NOT_SERVING, then let streams in flight finish for up to ``drain_timeout``."""
        await self.health.drain()
        await self.server.stop(grace=drain_timeout)

    async def wait(self) -> None:
        """Until the server has stopped."""
        await self.server.wait_for_termination()


__all__ = [
    "CHAIN_METADATA_KEY",
    "BindError",
    "ExtProcServer",
    "ExternalProcessorServicer",
    "PortBinder",
    "ResultError",
    "bind_port",
]
