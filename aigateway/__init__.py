"""aigateway: an LLM gateway data plane built as a framework for Envoy external processors.

Three packages, dependencies pointing one way (``docs/architecture.md``)::

    aigateway.translators      pure format conversion between LLM APIs
    aigateway.extproc          the ext_proc framework, the gateway built on it, and the
                               commands that run it
    aigateway.instrumentation  the metrics decorator and the OpenTelemetry setup

What a framework user needs comes from the package roots:
``from aigateway.extproc import Processor, ProcessorWrapper, Result, ...``,
``from aigateway.extproc.gateway import serve, ServeOptions`` and
``from aigateway.instrumentation import InstrumentedProcessor``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aigateway")
except PackageNotFoundError:  # run from a source tree without installing
    __version__ = "0+unknown"

__all__ = ["__version__", "extproc", "instrumentation", "translators"]
