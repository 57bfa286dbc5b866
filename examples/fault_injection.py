"""A fault-injecting wrapper, for chaos tests of your own deployment (and ours).

``x-fault-phase: request_headers | request_body | response_headers | response_body`` on
a request makes the wrapped processor raise in that phase, after the inner processor ran
(so routing is already decided). The gateway must still answer the client (a 500 JSON
error, or a reset once a streamed response is committed), keep serving, and count the
request once as an error. Never enable it on a gateway that untrusted clients reach.

    aigateway serve --config gateway.yaml --wrap examples/fault_injection.py:FaultInjector
"""

from __future__ import annotations

from aigateway.extproc import Headers, Processor, ProcessorWrapper, Result

PHASES = ("request_headers", "request_body", "response_headers", "response_body")


class InjectedFault(RuntimeError):
    """The failure this wrapper raises on purpose."""


class FaultInjector(ProcessorWrapper):
    __slots__ = ("phase",)

    def __init__(self, inner: Processor) -> None:
        super().__init__(inner)
        self.phase = ""

    def _maybe_fail(self, phase: str) -> None:
        if phase == self.phase:
            raise InjectedFault(f"fault injected in {phase}")

    async def on_request_headers(self, headers: Headers) -> Result:
        self.phase = headers.get("x-fault-phase", "") or ""
        result = await self.inner.on_request_headers(headers)
        self._maybe_fail("request_headers")
        return result

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        result = await self.inner.on_request_body(body, end_of_stream)
        self._maybe_fail("request_body")
        return result

    async def on_response_headers(self, headers: Headers) -> Result:
        result = await self.inner.on_response_headers(headers)
        self._maybe_fail("response_headers")
        return result

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        result = await self.inner.on_response_body(body, end_of_stream)
        self._maybe_fail("response_body")
        return result
