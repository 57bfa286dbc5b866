"""``grpc.health.v1.Health`` for the processor.

Written here rather than using ``grpc_health``'s aio servicer for one behaviour: when
the server drains, a ``Watch`` in progress reports NOT_SERVING and then ends cleanly.
grpc's servicer keeps watches open until the server cancels them, and grpc then logs
each cancelled watch as an unhandled error at every shutdown.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self._status: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._draining = False

    async def set(self, service: str, status: int) -> None:
        async with self._changed:
            self._status[service] = status
            self._changed.notify_all()

    async def drain(self) -> None:
        """Every service NOT_SERVING; watches end once they have reported it."""
        async with self._changed:
            for service in self._status:
                self._status[service] = NOT_SERVING
            self._draining = True
            self._changed.notify_all()

    async def Check(self, request: Any, context: Any) -> Any:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: Any, context: Any) -> None:
        last: int | None = None
        async with self._changed:
            while True:
                status = self._status.get(request.service, SERVICE_UNKNOWN)
                if status != last:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last = status
                if self._draining:
                    return
                await self._changed.wait()
