"""An in-process OTLP/gRPC collector for the exporter tests (metrics or traces)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc


class Collector:
    """The one method of an OTLP collector service: keeps each export, answers ``reply``."""

    def __init__(self, reply: Any) -> None:
        self.requests: list[Any] = []
        self._reply = reply

    def Export(self, request: Any, context: Any) -> Any:
        self.requests.append(request)
        return self._reply


@contextmanager
def collecting(
    add_to_server: Callable[[Any, grpc.Server], None], reply: Any
) -> Iterator[tuple[Collector, int]]:
    """A :class:`Collector` served on a free local port, registered by ``add_to_server``."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    collector = Collector(reply)
    add_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield collector, port
    finally:
        server.stop(None)
