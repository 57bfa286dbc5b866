"""The ext_proc framework: the :class:`Processor` interface, wrappers, the router and the
gRPC server that owns Envoy's protocol rules. It knows nothing of LLMs, configs or
metrics; the gateway (``aigateway.extproc.gateway``) is built on it.

Everything here is re-exported by ``aigateway.extproc``; import it from there.
"""

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.processor import (
    CONTINUE,
    ErrorFormatter,
    Headers,
    ImmediateResponse,
    LocalError,
    Outcome,
    Processor,
    ProcessorWrapper,
    Result,
    plain_error,
)
from aigateway.extproc.framework.router import (
    NotFoundProcessor,
    ProcessorFactory,
    Router,
    Wrap,
    compose,
)
from aigateway.extproc.framework.server import ExternalProcessorServicer, ExtProcServer

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
