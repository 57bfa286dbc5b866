"""Write Envoy external processors in Python, and run the LLM gateway built with them.

Three subpackages, one role each (``docs/architecture.md``):

- ``aigateway.extproc.framework``: the ext_proc framework, re-exported here. A
  :class:`Processor` handles one HTTP request, one async method per phase; a
  :class:`ProcessorWrapper` wraps another like ASGI middleware; the server owns Envoy's
  protocol rules so processors never build protobuf.
- ``aigateway.extproc.gateway``: the LLM gateway built on the framework: endpoint
  processors, the config, backend credentials, and ``serve()``.
- ``aigateway.extproc.ops``: running it: the ``aigateway`` command, ``up``, workers, the
  Envoy bootstrap and the mock backend.

A wrapper of your own::

    from aigateway.extproc import Headers, ImmediateResponse, ProcessorWrapper, Result

    class RequireTenant(ProcessorWrapper):
        async def on_request_headers(self, headers: Headers) -> Result:
            if not headers.get("x-tenant"):
                raise ImmediateResponse.error(401, "x-tenant header required")
            return await self.inner.on_request_headers(headers)

served with ``aigateway serve --config gateway.yaml --wrap my_policy.py:RequireTenant``
or ``aigateway.extproc.gateway.serve("gateway.yaml", wrap=RequireTenant)``.
"""

from aigateway.extproc.framework import (
    CONTINUE,
    Address,
    ErrorFormatter,
    ExternalProcessorServicer,
    ExtProcServer,
    Headers,
    ImmediateResponse,
    LocalError,
    NotFoundProcessor,
    Outcome,
    Processor,
    ProcessorFactory,
    ProcessorWrapper,
    Result,
    Router,
    Wrap,
    compose,
    plain_error,
)

__all__ = [
    "CONTINUE",
    "Address",
    "ErrorFormatter",
    "ExtProcServer",
    "ExternalProcessorServicer",
    "Headers",
    "ImmediateResponse",
    "LocalError",
    "NotFoundProcessor",
    "Outcome",
    "Processor",
    "ProcessorFactory",
    "ProcessorWrapper",
    "Result",
    "Router",
    "Wrap",
    "compose",
    "plain_error",
]
