"""Example: a processor of your own, by subclassing ``ChatCompletionProcessor``.

``BudgetedChatProcessor`` refuses chat requests that may generate more completion tokens
than the caller's tenant is allowed per request (see ``tenant_budget.py``), with an
OpenAI-style 4xx error, and hands everything else to the stock processor: routing by
model, translation for the backend, credentials, usage metadata.

Subclass when the rule needs the processor's own state or hooks; when it only needs to
see a request before it goes in, a wrapper composes better (``compose_wrappers.py``).

Run it behind Envoy like ``aigateway serve`` (same flags, plus ``--budgets``)::

    aigateway mock-backend &
    python examples/subclass_processor.py --config examples/envoy/config.yaml &
    envoy -c examples/envoy/envoy.yaml

    curl -s localhost:10000/v1/chat/completions -H 'x-tenant: free' \\
      -H 'content-type: application/json' -d '{"model": "gpt-4o-mini",
        "max_tokens": 1000, "messages": [{"role": "user", "content": "Hi"}]}'
    # -> 400 {"error": {"code": "tenant_budget_exceeded", "param": "max_tokens", ...}}

The serving code below composes the pieces ``aigateway serve`` is made of (routing table,
router, metrics decorator, gRPC server, metrics endpoint) with this processor in place of
the stock one for ``/v1/chat/completions``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

from tenant_budget import TENANT_HEADER, BudgetFileError, Budgets, TenantLimit

from extproc.addresses import Address
from extproc.app import (
    CHAT_COMPLETIONS,
    build_telemetry,
    install_stop_signals,
    processor_routes,
)
from extproc.backends import RoutingTable
from extproc.chat import ChatCompletionProcessor
from extproc.cli import DEFAULT_EXTPROC, DEFAULT_METRICS
from extproc.config import ConfigError, GatewayConfig, ResolvedSecrets, load_config, load_secrets
from extproc.logs import LEVELS, setup_logging
from extproc.models import MODELS_PATH
from extproc.processor import Headers, Result
from extproc.router import ProcessorWrap, Router
from extproc.server import ExtProcServer
from instrumentation.metrics import start_metrics_http_server

log = logging.getLogger("aigateway.example")

DEFAULT_BUDGETS = Path(__file__).with_name("budgets.yaml")


class BudgetedChatProcessor(ChatCompletionProcessor):
    """``ChatCompletionProcessor`` that first enforces a per-tenant token budget.

    The tenant is checked with the request headers (an unknown one is refused before
    Envoy buffers the body); the budget in :meth:`validate`, the parent's hook that runs
    on the parsed body before the model is routed. So a refused request is never
    routed, translated or signed and never reaches a backend, and the metrics decorator
    around this processor counts it as an ``error`` with backend and model ``unknown``.
    """

    __slots__ = ("_limit", "budgets")

    def __init__(self, table: RoutingTable, budgets: Budgets) -> None:
        super().__init__(table)
        self.budgets = budgets
        self._limit: TenantLimit | None = None

    async def on_request_headers(self, headers: Headers) -> Result:
        # The parent's checks first (405 for GET, 415 for compressed bodies...), so this
        # processor answers everything the stock one does, the same way.
        result = await super().on_request_headers(headers)
        self._limit = self.budgets.limit_for(headers.get(TENANT_HEADER))
        # The tenant is ours, not the backend's: do not send it upstream.
        return dataclasses.replace(result, remove_headers=(*result.remove_headers, TENANT_HEADER))

    def validate(self, payload: dict[str, Any]) -> None:
        super().validate(payload)  # 'messages' must be there: the stock 400 comes first
        assert self._limit is not None  # request headers always come before the body
        self.budgets.check(self._limit, payload)


def build_router(table: RoutingTable, budgets: Budgets, wrap: ProcessorWrap | None) -> Router:
    """The stock gateway's routes with :class:`BudgetedChatProcessor` for chat
    completions, every processor wrapped by ``wrap`` (the metrics decorator: outermost,
    so that refusals are counted like any other failed request).

    This mirrors ``extproc.app.build_router``, which has no parameter to swap one
    processor class; keep the ``prefixes`` in step with it.
    """
    routes = processor_routes(table)
    routes[CHAT_COMPLETIONS] = partial(BudgetedChatProcessor, table, budgets)
    return Router(routes, prefixes={MODELS_PATH + "/": routes[MODELS_PATH]}, wrap=wrap)


async def run(
    config: GatewayConfig,
    secrets: ResolvedSecrets,
    budgets: Budgets,
    *,
    extproc: Address,
    metrics: Address | None,
    drain_timeout: float,
) -> None:
    """Serve until SIGINT/SIGTERM, then drain: what ``aigateway serve`` does."""
    table = RoutingTable(config, secrets)
    telemetry = build_telemetry(table)
    server = ExtProcServer(build_router(table, budgets, telemetry.instrumentation.wrap))
    try:
        port = server.add_port(extproc.grpc_target())
    except RuntimeError as exc:
        raise SystemExit(f"example: cannot listen for ext_proc on {extproc}: {exc}") from None
    metrics_server = None
    if metrics is not None:
        try:
            metrics_server = start_metrics_http_server(
                metrics.bind_host, metrics.port, telemetry.registry
            )
        except OSError as exc:
            raise SystemExit(f"example: cannot serve metrics on {metrics}: {exc}") from None
    stop = asyncio.Event()
    install_stop_signals(stop)
    await server.start()
    where = str(extproc) if extproc.is_unix else f"{extproc.url_host()}:{port}"
    line = f"aigateway ready: ext_proc on {where} (BudgetedChatProcessor)"
    if metrics_server is not None and metrics is not None:
        line += f", metrics on http://{metrics.url_host()}:{metrics_server.server_port}/metrics"
    print(line, file=sys.stderr, flush=True)
    await stop.wait()
    log.info("stopping: draining for up to %gs", drain_timeout)
    await server.stop(drain_timeout)
    if metrics_server is not None:
        metrics_server.shutdown()
        metrics_server.server_close()
    telemetry.shutdown()


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway config")
    parser.add_argument(
        "--budgets",
        default=str(DEFAULT_BUDGETS),
        metavar="FILE",
        help=f"per-tenant budgets (default {DEFAULT_BUDGETS.name} beside this script)",
    )
    parser.add_argument("--extproc-addr", type=_address, default=DEFAULT_EXTPROC, metavar="ADDR")
    parser.add_argument("--metrics-addr", type=_address, default=DEFAULT_METRICS, metavar="ADDR")
    parser.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    extproc: Address = args.extproc_addr
    if not extproc.is_loopback:
        # ext_proc answers carry backend credentials; this example serves plaintext only
        # (`aigateway serve` adds TLS: --tls-cert/--tls-key).
        print(f"example: {extproc} is not loopback; use 127.0.0.1 or unix:", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        secrets = load_secrets(config, args.config)
        budgets = Budgets.load(args.budgets)
    except (ConfigError, BudgetFileError) as exc:
        print(f"example: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            run(
                config,
                secrets,
                budgets,
                extproc=extproc,
                metrics=args.metrics_addr,
                drain_timeout=args.drain_timeout,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
