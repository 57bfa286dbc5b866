"""The composition root: config -> routing table -> processors -> instrumented router ->
gRPC server and metrics endpoint. The only module in ``extproc`` that knows about
``instrumentation``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from extproc.addresses import Address
from extproc.backends import RoutingTable
from extproc.chat import ChatCompletionProcessor
from extproc.config import GatewayConfig, ResolvedSecrets
from extproc.embeddings import EmbeddingsProcessor
from extproc.models import MODELS_PATH, ModelCatalog, ModelsProcessor
from extproc.processor import Processor
from extproc.router import ProcessorFactory, ProcessorWrap, Router
from extproc.server import ExtProcServer
from instrumentation.metrics import (
    METER_NAME,
    GatewayMetrics,
    MetricsSetupError,
    cardinality_limit,
    create_meter_provider,
    otlp_readers_from_env,
    prometheus_reader,
    start_metrics_http_server,
)
from instrumentation.processor import Instrumentation

log = logging.getLogger("aigateway")

CHAT_COMPLETIONS = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"


class StartupError(Exception):
    """Something the operator must fix before the gateway can start (one line)."""


def processor_routes(table: RoutingTable) -> dict[str, ProcessorFactory]:
    """The paths the gateway serves and the processor for each."""
    models = partial(ModelsProcessor, ModelCatalog(table.config))
    return {
        CHAT_COMPLETIONS: partial(ChatCompletionProcessor, table),
        EMBEDDINGS: partial(EmbeddingsProcessor, table),
        MODELS_PATH: models,
    }


#: Replaces or adds processors: gets the routing table, returns path -> factory.
RouteOverrides = Callable[[RoutingTable], Mapping[str, ProcessorFactory]]


def build_router(
    table: RoutingTable,
    wrap: ProcessorWrap | None = None,
    routes: RouteOverrides | None = None,
) -> Router:
    """The gateway's router: :func:`processor_routes`, with ``routes`` (if given) merged
    over them, every processor wrapped by ``wrap``."""
    paths = processor_routes(table)
    if routes is not None:
        paths.update(routes(table))
    return Router(paths, prefixes={MODELS_PATH + "/": paths[MODELS_PATH]}, wrap=wrap)


@dataclass(slots=True)
class Telemetry:
    registry: CollectorRegistry
    instrumentation: Instrumentation
    shutdown: Callable[[], Any]


def build_telemetry(table: RoutingTable) -> Telemetry:
    """Meter provider with the Prometheus reader (and OTLP when asked), and the
    instrumentation every processor gets wrapped in."""
    registry = CollectorRegistry(auto_describe=True)
    readers = [prometheus_reader(registry), *otlp_readers_from_env()]
    provider = create_meter_provider(
        readers,
        cardinality=cardinality_limit(len(table.model_names), len(table.backend_names)),
    )
    instrumentation = Instrumentation.create(
        GatewayMetrics.create(provider.get_meter(METER_NAME)),
        models=table.model_names,
        backends=table.backend_names,
        model_header=table.model_header,
        backend_header=table.backend_header,
    )
    return Telemetry(registry, instrumentation, provider.shutdown)


@dataclass(slots=True)
class ServeOptions:
    extproc: Address
    metrics: Address | None
    drain_timeout: float = 10.0
    allow_remote_plaintext: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None


def _credentials(options: ServeOptions) -> grpc.ServerCredentials | None:
    if options.tls_cert is None and options.tls_key is None:
        if not options.extproc.is_loopback and not options.allow_remote_plaintext:
            raise StartupError(
                f"refusing to serve ext_proc in plaintext on non-loopback {options.extproc}:"
                " its answers carry backend credentials. Use --tls-cert/--tls-key, a loopback"
                " address or unix:PATH, or pass --allow-remote-plaintext if the network is"
                " trusted."
            )
        return None
    if options.tls_cert is None or options.tls_key is None:
        raise StartupError("--tls-cert and --tls-key go together")
    try:
        with open(options.tls_cert, "rb") as f:
            cert = f.read()
        with open(options.tls_key, "rb") as f:
            key = f.read()
        client_ca = None
        if options.tls_client_ca:
            with open(options.tls_client_ca, "rb") as f:
                client_ca = f.read()
    except OSError as exc:
        raise StartupError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def compose(*wraps: ProcessorWrap) -> ProcessorWrap:
    """One wrap from several, the first outermost: ``compose(a, b)(p) == a(b(p))``."""

    def wrap(processor: Processor) -> Processor:
        for w in reversed(wraps):
            processor = w(processor)
        return processor

    return wrap


class Gateway:
    """A running ext_proc server (and metrics endpoint) for one config.

    ``wrap`` adds your own wrappers around every processor, inside the metrics wrapper
    (so what they refuse or break is counted): ``Gateway(..., wrap=TenantBudget)``.
    ``routes`` swaps in processors of your own for some paths, e.g.
    ``routes=lambda table: {CHAT_COMPLETIONS: partial(MyChatProcessor, table)}``.
    """

    def __init__(
        self,
        config: GatewayConfig,
        secrets: ResolvedSecrets,
        options: ServeOptions,
        *,
        wrap: ProcessorWrap | None = None,
        routes: RouteOverrides | None = None,
    ) -> None:
        self.options = options
        self.table = RoutingTable(config, secrets)
        try:
            self.telemetry = build_telemetry(self.table)
        except MetricsSetupError as exc:
            raise StartupError(str(exc)) from None
        instrument = self.telemetry.instrumentation.wrap
        self.router = build_router(
            self.table,
            wrap=instrument if wrap is None else compose(instrument, wrap),
            routes=routes,
        )
        self.server = ExtProcServer(self.router)
        self.extproc_port = 0
        self.metrics_port: int | None = None
        self._metrics_server: Any = None

    async def start(self) -> None:
        options = self.options
        credentials = _credentials(options)
        try:
            self.extproc_port = self.server.add_port(options.extproc.grpc_target(), credentials)
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen for ext_proc on {options.extproc}: {exc}"
                " (is the port taken or the path not writable?)"
            ) from None
        if options.metrics is not None:
            try:
                self._metrics_server = start_metrics_http_server(
                    options.metrics.bind_host, options.metrics.port, self.telemetry.registry
                )
            except OSError as exc:
                raise StartupError(
                    f"cannot serve metrics on {options.metrics}: {exc.strerror or exc}"
                ) from None
            self.metrics_port = self._metrics_server.server_port
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(self.options.drain_timeout)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.telemetry.shutdown()

    def ready_line(self) -> str:
        ext = self.options.extproc
        where = str(ext) if ext.is_unix else f"{ext.url_host()}:{self.extproc_port}"
        line = f"aigateway ready: ext_proc on {where}"
        if self.metrics_port is not None and self.options.metrics is not None:
            line += (
                f", metrics on http://{self.options.metrics.url_host()}:{self.metrics_port}/metrics"
            )
        return line


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve(
    config: GatewayConfig,
    secrets: ResolvedSecrets,
    options: ServeOptions,
    *,
    wrap: ProcessorWrap | None = None,
    routes: RouteOverrides | None = None,
    name: str = "",
) -> None:
    """Run until SIGINT/SIGTERM, then drain and return. ``name`` is added to the ready
    line (to tell your own gateway from the stock one in logs)."""
    gateway = Gateway(config, secrets, options, wrap=wrap, routes=routes)
    stop = asyncio.Event()
    install_stop_signals(stop)
    await gateway.start()
    print(gateway.ready_line() + (f" ({name})" if name else ""), file=sys.stderr, flush=True)
    await stop.wait()
    log.info(
        "stopping: health NOT_SERVING, draining %d stream(s) for up to %gs",
        gateway.server.servicer.active,
        options.drain_timeout,
    )
    await gateway.stop()
    log.info("stopped")
