"""The composition root: config -> routing table -> processors -> instrumented router ->
gRPC server and metrics endpoint. The only module of the gateway that knows about
``aigateway.instrumentation`` (``docs/architecture.md``, "Layers")."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from aigateway.extproc.framework._protos.envoy.service.accesslog.v3.als_pb2_grpc import (
    add_AccessLogServiceServicer_to_server,
)
from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.processor import LocalError
from aigateway.extproc.framework.router import (
    NotFoundProcessor,
    ProcessorFactory,
    Router,
    Wrap,
    compose,
)
from aigateway.extproc.framework.server import (
    BindError,
    ExtProcServer,
    PortBinder,
    add_server_port,
    bind_port,
)
from aigateway.extproc.gateway.attempts import (
    ATTEMPT_CHAIN,
    CLIENT_NAMESPACE,
    CLIENT_PATH,
    AttemptLog,
    RestingBackends,
)
from aigateway.extproc.gateway.backends import RoutingTable
from aigateway.extproc.gateway.chat import ChatCompletionProcessor
from aigateway.extproc.gateway.config import (
    GatewayConfig,
    ResolvedSecrets,
    load_config,
    load_secrets,
)
from aigateway.extproc.gateway.embeddings import EmbeddingsProcessor
from aigateway.extproc.gateway.errors import JSON, anthropic_error_reply, openai_error_reply
from aigateway.extproc.gateway.messages import CountTokensProcessor, MessagesProcessor
from aigateway.extproc.gateway.models import MODELS_PATH, ModelCatalog, ModelsProcessor
from aigateway.extproc.gateway.responses import ResponsesProcessor
from aigateway.extproc.gateway.unrecorded import UnrecordedLog
from aigateway.instrumentation import (
    HeaderLabel,
    MetricsSetupError,
    Price,
    Telemetry,
    setup_telemetry,
    start_metrics_http_server,
)

log = logging.getLogger("aigateway")

CHAT_COMPLETIONS = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
RESPONSES = "/v1/responses"
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
#: The paths whose answers are not LLM requests (the models list, and token counting,
#: which is no generation and is not billed): the metrics wrapper does not see them
#: (docs/architecture.md, "Accounting rules").
NOT_COUNTED = frozenset({MODELS_PATH, COUNT_TOKENS})


def counted_path(path: str) -> bool:
    """Whether a request to ``path`` (the client's, query and all) is counted: not the
    :data:`NOT_COUNTED` paths, nor a model of the models list."""
    route = path.partition("?")[0]
    return route not in NOT_COUNTED and not route.startswith(MODELS_PATH + "/")


#: Where ``serve`` listens unless told otherwise: ext_proc on loopback only (its answers
#: carry backend credentials), metrics on every interface.
DEFAULT_EXTPROC_ADDR = "127.0.0.1:1063"
DEFAULT_METRICS_ADDR = ":9190"
DEFAULT_DRAIN_TIMEOUT = 10.0


class StartupError(Exception):
    """Something the operator must fix before the gateway can start (one line)."""


def processor_routes(
    table: RoutingTable, resting: RestingBackends | None = None
) -> dict[str, ProcessorFactory]:
    """The paths the gateway serves and the processor for each; ``resting`` is what
    the attempts learnt of backends out of quota (models with several backends)."""
    models = partial(ModelsProcessor, ModelCatalog(table.config))
    return {
        CHAT_COMPLETIONS: partial(ChatCompletionProcessor, table, resting=resting),
        EMBEDDINGS: partial(EmbeddingsProcessor, table, resting=resting),
        RESPONSES: partial(ResponsesProcessor, table, resting=resting),
        MESSAGES: partial(MessagesProcessor, table, resting=resting),
        COUNT_TOKENS: partial(CountTokensProcessor, table),
        MODELS_PATH: models,
    }


#: Replaces or adds processors: gets the routing table, returns path -> factory.
RouteOverrides = Callable[[RoutingTable], Mapping[str, ProcessorFactory]]


def error_formatter(error: LocalError, path: str) -> tuple[str, bytes]:
    """The router's formatter: the errors no endpoint wrote itself (a wrapper's refusal,
    an unknown path, a processor that raised) in the client API of the path."""
    route = path.partition("?")[0]
    if route == MESSAGES or route.startswith(MESSAGES + "/"):
        return JSON, anthropic_error_reply(error)
    return JSON, openai_error_reply(error)


def build_router(
    table: RoutingTable,
    wrap: Wrap | None = None,
    routes: RouteOverrides | None = None,
    *,
    instrument: Wrap | None = None,
    resting: RestingBackends | None = None,
) -> Router:
    """The gateway's router: :func:`processor_routes`, with ``routes`` (if given) merged
    over them, every processor wrapped by ``wrap``, and that by ``instrument`` (the
    metrics wrapper) on every path but :data:`NOT_COUNTED`."""
    paths = processor_routes(table, resting)
    if routes is not None:
        paths.update(routes(table))
    counted = (
        wrap if instrument is None else instrument if wrap is None else compose(instrument, wrap)
    )

    def wrapped(path: str, factory: ProcessorFactory) -> ProcessorFactory:
        outer = wrap if path in NOT_COUNTED else counted
        return factory if outer is None else lambda: outer(factory())

    return Router(
        {path: wrapped(path, factory) for path, factory in paths.items()},
        prefixes={MODELS_PATH + "/": wrapped(MODELS_PATH, paths[MODELS_PATH])},
        fallback=wrapped("", NotFoundProcessor),
        errors=error_formatter,
    )


def build_attempt_router(table: RoutingTable, resting: RestingBackends) -> Router:
    """The router of the streams from the model clusters' upstream filter chain: one
    processor per attempt, translating for the backend Envoy picked (docs/architecture.md,
    "Routing over several backends"). Not instrumented: the listener's processor counts
    the request, Envoy's per-attempt log the attempts."""
    return Router(
        {
            path: partial(endpoint, table, attempt=True, resting=resting)
            for path, endpoint in (
                (CHAT_COMPLETIONS, ChatCompletionProcessor),
                (EMBEDDINGS, EmbeddingsProcessor),
                (RESPONSES, ResponsesProcessor),
                (MESSAGES, MessagesProcessor),
            )
        },
        errors=error_formatter,
        # An earlier attempt may have rewritten :path; the client's comes with the request.
        path_metadata=(CLIENT_NAMESPACE, CLIENT_PATH),
    )


def build_telemetry(config: GatewayConfig) -> Telemetry:
    """The telemetry for a config: its models and backends are the label values; its
    ``metrics`` options choose the families and header labels, and its models' prices
    feed the cost counter."""
    return setup_telemetry(
        models=[m.name for m in config.models],
        backends=[b.name for b in config.backends],
        schema=config.metrics.schema_,
        header_labels=[
            HeaderLabel(h.header, h.label, frozenset(h.values))
            for h in config.metrics.labels_from_headers
        ],
        prices={
            m.name: Price(m.price.input, m.price.output, m.price.cached_input, m.price.cache_write)
            for m in config.models
            if m.price is not None
        },
        providers={b.name: b.genai_provider for b in config.backends},
        rules=[rule.name for rule in config.limits.rules],
    )


@dataclass(slots=True)
class ServeOptions:
    """How :func:`serve` listens. The defaults are ``aigateway serve``'s: ext_proc on
    ``127.0.0.1:1063`` and metrics on ``:9190``; ``metrics=None`` serves no metrics
    endpoint. A non-loopback ``extproc`` needs ``tls_cert``/``tls_key`` or
    ``allow_remote_plaintext`` (the ext_proc answers carry backend credentials)."""

    extproc: Address = field(default_factory=lambda: Address.parse(DEFAULT_EXTPROC_ADDR))
    metrics: Address | None = field(default_factory=lambda: Address.parse(DEFAULT_METRICS_ADDR))
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    allow_remote_plaintext: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    #: Binds the ext_proc port; ``aigateway serve`` gives one that says why it cannot.
    binder: PortBinder = bind_port


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
        wrap: Wrap | None = None,
        routes: RouteOverrides | None = None,
    ) -> None:
        self.options = options
        self.table = RoutingTable(config, secrets)
        try:
            self.telemetry = build_telemetry(config)
        except MetricsSetupError as exc:
            raise StartupError(str(exc)) from None
        self.resting = RestingBackends()
        self.router = build_router(
            self.table,
            wrap=wrap,
            routes=routes,
            instrument=self.telemetry.instrumentation.wrap,
            resting=self.resting,
        )
        several = any(m.several for m in config.models)
        self.server = ExtProcServer(
            self.router,
            binder=options.binder,
            # Only with a model with several backends: one backend per model costs as before.
            chains={ATTEMPT_CHAIN: build_attempt_router(self.table, self.resting)}
            if several
            else None,
        )
        instrumentation = self.telemetry.instrumentation
        add_AccessLogServiceServicer_to_server(
            AttemptLog(instrumentation.record_attempt),
            self.server.server,
        )
        self.extproc_port = 0
        self.metrics_port: int | None = None
        self._metrics_server: Any = None

    async def start(self) -> None:
        """Listen for ext_proc (and serve metrics); raises :class:`StartupError`."""
        options = self.options
        credentials = _credentials(options)
        try:
            self.extproc_port = self.server.add_port(options.extproc.grpc_target(), credentials)
        except BindError as exc:
            raise StartupError(
                f"cannot listen for ext_proc on {options.extproc}: {exc.reason}"
            ) from None
        if options.metrics is not None:
            self._metrics_server = _serve_metrics(options.metrics, self.telemetry)
            self.metrics_port = self._metrics_server.server_port
        await self.server.start()

    async def stop(self) -> None:
        """NOT_SERVING, drain streams in flight, then stop serving metrics."""
        await self.server.stop(self.options.drain_timeout)
        if self.table.limiter is not None:
            await self.table.limiter.close()
        _stop_metrics(self._metrics_server, self.telemetry)

    def ready_line(self) -> str:
        """The ``aigateway ready: ...`` line, with the ports actually bound."""
        ext = self.options.extproc
        where = str(ext) if ext.is_unix else f"{ext.url_host()}:{self.extproc_port}"
        line = f"aigateway ready: ext_proc on {where}"
        if self.metrics_port is not None and self.options.metrics is not None:
            line += (
                f", metrics on http://{self.options.metrics.url_host()}:{self.metrics_port}/metrics"
            )
        return line


def _serve_metrics(address: Address, telemetry: Telemetry) -> Any:
    """The ``/metrics`` endpoint on ``address``; raises :class:`StartupError`."""
    try:
        return start_metrics_http_server(address.bind_host, address.port, telemetry.registry)
    except OSError as exc:
        raise StartupError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None


def _stop_metrics(metrics_server: Any, telemetry: Telemetry) -> None:
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
    telemetry.shutdown()


class UnrecordedCounter:
    """Counts the requests Envoy answered itself that no processor recorded
    (docs/architecture.md, "Requests no processor recorded"): Envoy's log of them over
    gRPC on ``options.extproc`` (with its TLS settings), and a ``/metrics`` endpoint on
    ``options.metrics`` with a processor's families, labels and bounds. It must outlive
    the processors: ``serve --workers`` runs it in its parent."""

    def __init__(self, config: GatewayConfig, options: ServeOptions) -> None:
        self.options = options
        try:
            self.telemetry = build_telemetry(config)
        except MetricsSetupError as exc:
            raise StartupError(str(exc)) from None
        self.server = grpc.aio.server()
        add_AccessLogServiceServicer_to_server(
            UnrecordedLog(self.telemetry.instrumentation.record_unrecorded, counted_path),
            self.server,
        )
        self.port = 0
        self.metrics_port: int | None = None
        self._metrics_server: Any = None

    async def start(self) -> None:
        """Listen for Envoy's log (and serve metrics); raises :class:`StartupError`."""
        options = self.options
        try:
            self.port = add_server_port(
                self.server, options.extproc.grpc_target(), _credentials(options), options.binder
            )
        except BindError as exc:
            raise StartupError(
                f"cannot listen for Envoy's access log on {options.extproc}: {exc.reason}"
            ) from None
        if options.metrics is not None:
            self._metrics_server = _serve_metrics(options.metrics, self.telemetry)
            self.metrics_port = self._metrics_server.server_port
        await self.server.start()

    async def stop(self) -> None:
        """Stop taking Envoy's log (its streams never end on their own), then metrics."""
        await self.server.stop(grace=UNRECORDED_STOP_GRACE_SECONDS)
        _stop_metrics(self._metrics_server, self.telemetry)


#: How long the counter lets Envoy's log streams finish when it stops.
UNRECORDED_STOP_GRACE_SECONDS = 1.0


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_gateway(
    config: GatewayConfig,
    secrets: ResolvedSecrets,
    options: ServeOptions,
    *,
    wrap: Wrap | None = None,
    routes: RouteOverrides | None = None,
    name: str = "",
) -> None:
    """Run a :class:`Gateway` until SIGINT/SIGTERM, then drain and return: the body of
    :func:`serve`, for callers that own an event loop."""
    gateway = Gateway(config, secrets, options, wrap=wrap, routes=routes)
    stop = asyncio.Event()
    install_stop_signals(stop)
    await gateway.start()
    for note in gateway.table.credential_notes(unconfigured_only=True):
        log.info("%s", note)
    print(gateway.ready_line() + (f" ({name})" if name else ""), file=sys.stderr, flush=True)
    await stop.wait()
    log.info(
        "stopping: health NOT_SERVING, draining %d stream(s) for up to %gs",
        gateway.server.servicer.active,
        options.drain_timeout,
    )
    await gateway.stop()
    log.info("stopped")


def run_event_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` on uvloop when it is installed (the ``fast`` extra), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def serve(
    config: GatewayConfig | str | os.PathLike[str],
    secrets: ResolvedSecrets | None = None,
    options: ServeOptions | None = None,
    *,
    wrap: Wrap | None = None,
    routes: RouteOverrides | None = None,
    name: str = "",
) -> None:
    """Serve the gateway as ``aigateway serve`` does, until SIGINT or SIGTERM.

    ``config`` is a config file's path or a loaded :class:`GatewayConfig` (then
    ``secrets`` default to those it names, files relative to the working directory).
    ``wrap`` adds your wrappers around every processor, inside the metrics wrapper, so
    what they refuse or break is counted: ``serve("gateway.yaml", wrap=TenantBudget)``
    (several: ``wrap=compose(AccessLog, TenantBudget)``, the first outermost).
    ``routes`` swaps in processors of your own for some paths, e.g.
    ``routes=lambda table: {CHAT_COMPLETIONS: partial(MyChatProcessor, table)}``.
    ``name`` is added to the ``ready`` line.

    Raises :class:`~aigateway.extproc.gateway.ConfigError` for a bad config and
    :class:`StartupError` for anything else that keeps it from starting (a taken port,
    plaintext on a public address); both carry a one-line message.
    """
    if not isinstance(config, GatewayConfig):
        path = config
        config = load_config(path)
        if secrets is None:
            secrets = load_secrets(config, path)
    if secrets is None:
        secrets = ResolvedSecrets(config, Path.cwd())
    run_event_loop(
        run_gateway(config, secrets, options or ServeOptions(), wrap=wrap, routes=routes, name=name)
    )
