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

Serving is ``aigateway serve``'s own ``serve()``, told to use this processor for
``/v1/chat/completions`` (``routes=``); everything else is the stock gateway.
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
from extproc.app import CHAT_COMPLETIONS, RouteOverrides, ServeOptions, StartupError, serve
from extproc.backends import RoutingTable
from extproc.chat import ChatCompletionProcessor
from extproc.cli import DEFAULT_EXTPROC, DEFAULT_METRICS
from extproc.config import ConfigError, load_config, load_secrets
from extproc.logs import LEVELS, setup_logging
from extproc.processor import Headers, Result

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


def budgeted_routes(budgets: Budgets) -> RouteOverrides:
    """The route override that puts :class:`BudgetedChatProcessor` on chat completions;
    every other path keeps the stock processor, and the metrics decorator still wraps
    every processor (outermost), so refusals are counted like any failed request."""
    return lambda table: {CHAT_COMPLETIONS: partial(BudgetedChatProcessor, table, budgets)}


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
    options = ServeOptions(
        extproc=extproc, metrics=args.metrics_addr, drain_timeout=args.drain_timeout
    )
    try:
        asyncio.run(
            serve(
                config,
                secrets,
                options,
                routes=budgeted_routes(budgets),
                name="BudgetedChatProcessor",
            )
        )
    except StartupError as exc:
        print(f"example: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
