"""The ext_proc gRPC server: turns Envoy's messages into Processor calls and back.

It owns the protocol rules (docs/architecture.md, "Protocol rules"): one response per
message, in order, of the matching type; header values read from ``raw_value`` and
written only there; ``content-length`` kept true when a buffered body is replaced;
``clear_route_cache`` only in the request direction; streamed responses switched with
``mode_override`` and stripped of ``content-length``; errors before the response is
committed become an immediate JSON error, after it an aborted stream; ``on_stream_end``
exactly once."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Mapping
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
from aigateway.extproc.framework._protos.envoy.type.v3 import http_status_pb2
from aigateway.extproc.framework.health import SERVING, HealthService
from aigateway.extproc.framework.processor import (
    CONTINUE,
    LOCAL_REPLY_DETAILS_PREFIX,
    Headers,
    ImmediateResponse,
    Outcome,
    Processor,
    Result,
)
from aigateway.extproc.framework.router import Router
from aigateway.translators.errors import openai_error_body

log = logging.getLogger("aigateway.server")

SERVICE_NAME = "envoy.service.ext_proc.v3.ExternalProcessor"
#: Large enough for big buffered bodies (images, long contexts) in one message.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_STREAMED_RESPONSE = processing_mode_pb2.ProcessingMode(
    response_body_mode=processing_mode_pb2.ProcessingMode.STREAMED
)
_EMPTY_TRAILERS = pb.TrailersResponse()
# Answers to a CONTINUE result, built once: most messages (request headers, streamed
# chunks) need nothing else, and these are never mutated after this point.
_CONTINUE_REQUEST_HEADERS = pb.ProcessingResponse(request_headers=pb.HeadersResponse())
_CONTINUE_REQUEST_BODY = pb.ProcessingResponse(request_body=pb.BodyResponse())
_CONTINUE_RESPONSE_HEADERS = pb.ProcessingResponse(response_headers=pb.HeadersResponse())
_CONTINUE_RESPONSE_BODY = pb.ProcessingResponse(response_body=pb.BodyResponse())


class BindError(OSError):
    """The server cannot listen on an address; ``reason`` says why in a few words."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address}: {reason}")
        self.address = address
        self.reason = reason


def _bind_reason(log: str) -> str | None:
    # grpc: "... add_port.cc:83] Failed to add port ... (Error in bind for address
    # '[::1]:1063': Address already in use)"; the last parenthesised clause is the cause.
    match = re.search(r":\s*([^:()]+)\)\s*$", log.strip().splitlines()[-1]) if log.strip() else None
    return match.group(1).strip() if match else None


class _CapturedStderr:
    """File descriptor 2 redirected to a temporary file while the block runs. What was
    written is copied back to stderr afterwards unless ``failed`` is set (grpc's native
    log line for the failure the caller reports itself)."""

    def __init__(self) -> None:
        self.failed = False
        self._file: Any = None
        self._saved = -1

    def __enter__(self) -> _CapturedStderr:
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def text(self) -> str:
        self._file.flush()
        self._file.seek(0)
        return str(self._file.read().decode("utf-8", "replace"))

    def __exit__(self, *exc_info: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if not self.failed:
            written = self.text()
            if written:
                sys.stderr.write(written)
                sys.stderr.flush()
        self._file.close()


class _Abort(Exception):
    """The response is committed; only resetting the stream is left."""


def _headers(msg: pb.HttpHeaders) -> Headers:
    pairs = [
        (h.key, h.raw_value.decode("latin-1") if h.raw_value else h.value)
        for h in msg.headers.headers
    ]
    return Headers(pairs, end_of_stream=msg.end_of_stream)


def _header_mutation(
    set_headers: tuple[tuple[str, str], ...] | list[tuple[str, str]],
    remove_headers: tuple[str, ...] | list[str],
) -> pb.HeaderMutation:
    return pb.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=name, raw_value=value.encode("latin-1")),
                append_action=_OVERWRITE,
            )
            for name, value in set_headers
        ],
        remove_headers=remove_headers,
    )


def _struct(metadata: Mapping[str, Mapping[str, Any]]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update({ns: dict(fields) for ns, fields in metadata.items()})
    return out


class _Stream:
    """The state of one ext_proc stream (one HTTP request)."""

    __slots__ = (
        "committed",
        "error",
        "local_reply",
        "processor",
        "request_id",
        "response_complete",
        "router",
        "status",
        "streamed",
    )

    def __init__(self, router: Router) -> None:
        self.router = router
        self.processor: Processor | None = None
        self.request_id = "-"
        self.status: int | None = None
        self.streamed = False
        self.committed = False  # response headers have gone to the client
        self.response_complete = False
        self.local_reply = False
        self.error: BaseException | None = None

    def _common(
        self, result: Result, *, request: bool, buffered_body: bool
    ) -> pb.CommonResponse | None:
        if result is CONTINUE:
            return None
        set_headers = result.set_headers
        remove_headers = result.remove_headers
        common = pb.CommonResponse()
        if result.body is not None:
            if buffered_body:
                set_headers = (*set_headers, ("content-length", str(len(result.body))))
            if result.body:
                common.body_mutation.body = result.body
            else:
                common.body_mutation.clear_body = True
        if set_headers or remove_headers:
            common.header_mutation.CopyFrom(_header_mutation(set_headers, remove_headers))
        if request and result.clear_route_cache:
            common.clear_route_cache = True
        return common

    def _metadata(self, response: pb.ProcessingResponse, result: Result) -> pb.ProcessingResponse:
        if result.dynamic_metadata:
            response.dynamic_metadata.CopyFrom(_struct(result.dynamic_metadata))
        return response

    async def handle(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse | None:
        kind = request.WhichOneof("request")
        try:
            return await self._dispatch(kind, request)
        except ImmediateResponse as reply:
            if self.committed:
                log.warning(
                    "request %s: immediate response %d after the response was committed;"
                    " resetting the stream",
                    self.request_id,
                    reply.status,
                )
                raise _Abort from reply
            self.local_reply = True
            self.response_complete = True
            self.status = reply.status
            response = pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=reply.status),
                    headers=_header_mutation(reply.headers, ()),
                    body=reply.body,
                    details=reply.details,
                )
            )
            if reply.dynamic_metadata:
                response.dynamic_metadata.CopyFrom(_struct(reply.dynamic_metadata))
            return response
        except Exception as exc:
            if self.error is None:
                self.error = exc
            log.exception("request %s: processor failed in %s", self.request_id, kind)
            if self.committed:
                raise _Abort from exc
            self.local_reply = True
            self.response_complete = True
            self.status = 500
            # The exception text may hold anything (even credentials): the client gets a
            # generic message and the request id to find the log line.
            body = openai_error_body(
                f"The gateway failed to process the request (request id {self.request_id}).",
                status=500,
                type="server_error",
                code="internal_error",
            )
            return pb.ProcessingResponse(
                immediate_response=pb.ImmediateResponse(
                    status=http_status_pb2.HttpStatus(code=500),
                    headers=_header_mutation((("content-type", "application/json"),), ()),
                    body=body,
                    details=LOCAL_REPLY_DETAILS_PREFIX + "processor_error",
                )
            )

    async def _dispatch(
        self, kind: str | None, request: pb.ProcessingRequest
    ) -> pb.ProcessingResponse | None:
        if kind == "request_headers":
            headers = _headers(request.request_headers)
            self.request_id = headers.get("x-request-id", "-") or "-"
            if self.processor is None:
                self.processor = self.router.create(headers.path)
            result = await self.processor.on_request_headers(headers)
            if result is CONTINUE:
                return _CONTINUE_REQUEST_HEADERS
            response = pb.ProcessingResponse()
            common = self._common(result, request=True, buffered_body=True)
            if common is not None:
                if result.body is not None:
                    common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
                response.request_headers.response.CopyFrom(common)
            else:
                response.request_headers.SetInParent()
            return self._metadata(response, result)

        processor = self.processor
        if processor is None:
            # Envoy always starts with request headers; anything else is a broken peer.
            raise RuntimeError(f"ext_proc message {kind!r} before request headers")

        if kind == "request_body":
            body = request.request_body
            result = await processor.on_request_body(body.body, body.end_of_stream)
            if result is CONTINUE:
                return _CONTINUE_REQUEST_BODY
            response = pb.ProcessingResponse()
            common = self._common(result, request=True, buffered_body=True)
            if common is not None:
                response.request_body.response.CopyFrom(common)
            else:
                response.request_body.SetInParent()
            return self._metadata(response, result)

        if kind == "response_headers":
            headers = _headers(request.response_headers)
            self.status = headers.status
            result = await processor.on_response_headers(headers)
            if result is CONTINUE:
                if headers.end_of_stream:
                    self.response_complete = True
                return _CONTINUE_RESPONSE_HEADERS
            response = pb.ProcessingResponse()
            stream = result.stream_response_body and not headers.end_of_stream
            if stream:
                result = Result(
                    set_headers=result.set_headers,
                    remove_headers=(*result.remove_headers, "content-length"),
                    clear_route_cache=False,
                    dynamic_metadata=result.dynamic_metadata,
                )
            replaces = result.body is not None  # e.g. an error body for a bodiless error
            common = self._common(result, request=False, buffered_body=replaces)
            if common is not None:
                if replaces:
                    common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
                response.response_headers.response.CopyFrom(common)
            else:
                response.response_headers.SetInParent()
            if stream:
                response.mode_override.CopyFrom(_STREAMED_RESPONSE)
                self.streamed = True
                self.committed = True
            if headers.end_of_stream:
                self.response_complete = True
            return self._metadata(response, result)

        if kind == "response_body":
            body = request.response_body
            result = await processor.on_response_body(body.body, body.end_of_stream)
            if result is CONTINUE:
                if body.end_of_stream:
                    self.response_complete = True
                return _CONTINUE_RESPONSE_BODY
            response = pb.ProcessingResponse()
            common = self._common(result, request=False, buffered_body=not self.streamed)
            if common is not None:
                response.response_body.response.CopyFrom(common)
            else:
                response.response_body.SetInParent()
            if body.end_of_stream or result.end_of_response:
                self.response_complete = True
            return self._metadata(response, result)

        if kind == "request_trailers":
            return pb.ProcessingResponse(request_trailers=_EMPTY_TRAILERS)
        if kind == "response_trailers":
            self.response_complete = True
            return pb.ProcessingResponse(response_trailers=_EMPTY_TRAILERS)
        log.warning("request %s: ignoring unknown ext_proc message %r", self.request_id, kind)
        return None

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


class ExternalProcessorServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """``envoy.service.ext_proc.v3.ExternalProcessor`` over a :class:`Router`."""

    def __init__(self, router: Router) -> None:
        self.router = router
        #: Streams in flight (for draining and tests).
        self.active = 0

    async def Process(
        self, request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        stream = _Stream(self.router)
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
            await stream.end(cancelled)


class ExtProcServer:
    """A ``grpc.aio`` server with the ext_proc and health services."""

    def __init__(self, router: Router, *, options: list[tuple[str, Any]] | None = None) -> None:
        self.servicer = ExternalProcessorServicer(router)
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

        Raises :class:`BindError` with the reason (``Address already in use``...) when it
        cannot. grpc's C core also writes its own log line to stderr for this; that line
        is held back (the caller reports the failure in its own words) and anything else
        written meanwhile is passed on.
        """
        with _CapturedStderr() as captured:
            try:
                if credentials is not None:
                    return self.server.add_secure_port(address, credentials)
                return self.server.add_insecure_port(address)
            except RuntimeError:
                captured.failed = True
                reason = _bind_reason(captured.text()) or "cannot listen there"
                raise BindError(address, reason) from None

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


__all__ = ["BindError", "ExtProcServer", "ExternalProcessorServicer"]
