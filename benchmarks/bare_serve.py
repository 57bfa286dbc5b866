"""``aigateway serve`` without ``InstrumentedProcessor``: the benchmark's "bare" variant
(and, with ``--null``, the floor: a grpc.aio servicer that answers every message with a
prebuilt CONTINUE and does nothing else).

The same composition as :class:`extproc.app.Gateway` (routing table, ``build_router``,
``ExtProcServer`` with its servicer and the chat processor, on uvloop when installed),
minus the metrics wrapper and the ``/metrics`` endpoint, so the difference between this
and ``aigateway serve`` is what instrumentation costs.

    python -m benchmarks.bare_serve --config FILE --extproc-addr 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc

from aigateway.extproc.framework._protos.envoy.extensions.filters.http.ext_proc.v3 import (
    processing_mode_pb2,
)
from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2 as pb,
)
from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2_grpc as pb_grpc,
)
from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.server import MAX_MESSAGE_BYTES, ExtProcServer
from aigateway.extproc.gateway.app import build_router, install_stop_signals, run_event_loop
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.config import load_config, load_secrets

_SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class NullServicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """Continues every message unchanged (streamed responses switched to STREAMED so
    chunks still reach it one by one): what grpc.aio and Envoy cost with no processor."""

    _CONTINUE = {
        "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
        "request_body": pb.ProcessingResponse(request_body=pb.BodyResponse()),
        "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
        "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    }
    _STREAM = pb.ProcessingResponse(
        response_headers=pb.HeadersResponse(),
        mode_override=processing_mode_pb2.ProcessingMode(
            response_body_mode=processing_mode_pb2.ProcessingMode.STREAMED
        ),
    )

    async def Process(self, request_iterator: Any, context: Any) -> None:
        while True:
            request = await context.read()
            if request is grpc.aio.EOF:  # type: ignore[attr-defined]
                return
            kind = request.WhichOneof("request")
            response = self._CONTINUE[kind]
            if kind == "response_headers" and any(
                h.key == "content-type" and b"event-stream" in h.raw_value
                for h in request.response_headers.headers.headers
            ):
                response = self._STREAM
            await context.write(response)


async def serve_bare(
    config_path: str,
    extproc: Address,
    options: list[tuple[str, Any]] | None = None,
    *,
    null: bool = False,
) -> None:
    config = load_config(config_path)
    table = RoutingTable(config, load_secrets(config, config_path))
    server = ExtProcServer(build_router(table), options=options)
    if null:  # the same grpc.aio server and options, another servicer
        server.server = grpc.aio.server(options=[*_SERVER_OPTIONS, *(options or [])])
        pb_grpc.add_ExternalProcessorServicer_to_server(NullServicer(), server.server)
    port = server.add_port(extproc.grpc_target())
    stop = asyncio.Event()
    install_stop_signals(stop)
    await server.server.start()
    what = "null" if null else "bare"
    print(
        f"aigateway ({what}) ready: ext_proc on {extproc.url_host()}:{port}",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    await server.server.stop(5.0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_serve")
    parser.add_argument("--config", required=True)
    parser.add_argument("--extproc-addr", required=True, type=Address.parse)
    parser.add_argument(
        "--grpc-option",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="an extra grpc server option, for experiments (repeatable)",
    )
    parser.add_argument("--null", action="store_true", help="the do-nothing servicer")
    args = parser.parse_args()
    options = [
        (name, int(value)) for name, _, value in (o.partition("=") for o in args.grpc_option)
    ]
    run_event_loop(serve_bare(args.config, args.extproc_addr, options, null=args.null))


if __name__ == "__main__":
    main()
