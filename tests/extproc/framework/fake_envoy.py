"""Drives ``ExternalProcessorServicer.Process`` the way Envoy does, one message at a time,
without a network: the servicer reads from and writes to an in-memory context."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc

from aigateway.extproc.framework._protos.envoy.config.core.v3 import base_pb2
from aigateway.extproc.framework._protos.envoy.extensions.filters.http.ext_proc.v3 import (
    processing_mode_pb2,
)
from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2 as pb,
)
from aigateway.extproc.framework.server import ExternalProcessorServicer


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code


class FakeContext:
    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.outbox: asyncio.Queue[pb.ProcessingResponse] = asyncio.Queue()

    async def read(self) -> Any:
        return await self.inbox.get()

    async def write(self, response: pb.ProcessingResponse) -> None:
        await self.outbox.put(response)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)


def header_map(pairs: list[tuple[str, str]]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(
        headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode("latin-1")) for k, v in pairs]
    )


def request_headers(
    path: str = "/v1/chat/completions",
    *,
    method: str = "POST",
    extra: list[tuple[str, str]] | None = None,
    end_of_stream: bool = False,
    buffered_body: bool = False,
) -> pb.ProcessingRequest:
    """``buffered_body``: say, as Envoy 1.40 does on a stream's first message, that the
    request body will come whole (``protocol_config.request_body_mode: BUFFERED``)."""
    pairs = [
        (":method", method),
        (":path", path),
        (":authority", "gateway"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("x-request-id", "req-1"),
        *(extra or []),
    ]
    request = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(headers=header_map(pairs), end_of_stream=end_of_stream)
    )
    if buffered_body:
        request.protocol_config.request_body_mode = processing_mode_pb2.ProcessingMode.BUFFERED
    return request


def request_body(body: bytes | dict[str, Any], end_of_stream: bool = True) -> pb.ProcessingRequest:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=end_of_stream))


def response_headers(
    status: int = 200,
    content_type: str = "application/json",
    *,
    extra: list[tuple[str, str]] | None = None,
    end_of_stream: bool = False,
    buffered_body: bool = False,
) -> pb.ProcessingRequest:
    """``buffered_body``: say, as Envoy 1.40 does on a stream's first message, that the
    request body will come whole (``protocol_config.request_body_mode: BUFFERED``)."""
    pairs = [(":status", str(status)), ("content-type", content_type), *(extra or [])]
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(headers=header_map(pairs), end_of_stream=end_of_stream)
    )


def response_body(body: bytes | dict[str, Any], end_of_stream: bool = True) -> pb.ProcessingRequest:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=end_of_stream))


class Conversation:
    """One ext_proc stream: ``await send(msg)`` returns the servicer's answer."""

    def __init__(self, servicer: ExternalProcessorServicer) -> None:
        self.context = FakeContext()
        self.task = asyncio.ensure_future(servicer.Process(None, self.context))  # type: ignore[arg-type]

    async def send(self, request: pb.ProcessingRequest) -> pb.ProcessingResponse:
        await self.context.inbox.put(request)
        getter = asyncio.ensure_future(self.context.outbox.get())
        done, _ = await asyncio.wait({getter, self.task}, timeout=5, return_when="FIRST_COMPLETED")
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.task in done:
            self.task.result()  # raises what the servicer raised
            raise AssertionError("the servicer ended the stream without answering")
        raise AssertionError("no answer within 5 s")

    async def close(self) -> None:
        """Envoy half-closes after the last message."""
        await self.context.inbox.put(grpc.aio.EOF)
        await asyncio.wait_for(self.task, 5)

    async def cancel(self) -> None:
        """Envoy resets the stream (the client went away)."""
        self.task.cancel()
        try:
            await asyncio.wait_for(self.task, 5)
        except asyncio.CancelledError:
            pass


def headers_set(common: pb.CommonResponse) -> dict[str, str]:
    return {
        o.header.key: o.header.raw_value.decode("latin-1")
        for o in common.header_mutation.set_headers
    }


def immediate_json(response: pb.ProcessingResponse) -> tuple[int, dict[str, Any]]:
    assert response.WhichOneof("response") == "immediate_response", response
    imm = response.immediate_response
    return imm.status.code, json.loads(imm.body)


def metadata(response: pb.ProcessingResponse, namespace: str = "aigateway") -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(response.dynamic_metadata)
    return dict(doc.get(namespace, {}))
