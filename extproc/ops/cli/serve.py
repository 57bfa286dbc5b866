"""``aigateway serve``: the ext_proc gRPC server and its metrics endpoint."""

from __future__ import annotations

import argparse
import sys

from aigateway.extproc.framework.memory import use_one_arena
from aigateway.extproc.framework.router import Wrap, compose
from aigateway.extproc.gateway import (
    ServeOptions,
    StartupError,
    load_config,
    load_secrets,
    run_gateway,
)
from aigateway.extproc.gateway.app import run_event_loop
from aigateway.extproc.ops.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    add_config_flag,
    add_drain_timeout_flag,
    add_extproc_flag,
    add_logging_flags,
    add_metrics_flag,
    fail,
    worker_count,
)
from aigateway.extproc.ops.logs import bind_explained
from aigateway.extproc.ops.plugins import PluginError, load_routes, load_wrap

HELP = "run the ext_proc gRPC server and the metrics endpoint"
DESCRIPTION = """\
Run the external processor Envoy's ext_proc filter talks to, and its Prometheus
/metrics endpoint. Prints one `aigateway ready: ...` line on stderr once it accepts;
on SIGINT or SIGTERM its gRPC health turns NOT_SERVING, requests in flight get
--drain-timeout seconds to finish, and it exits 0."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_flag(parser)
    add_extproc_flag(parser, "ext_proc gRPC listen address: HOST:PORT, :PORT or unix:PATH")
    add_metrics_flag(parser)
    add_drain_timeout_flag(parser, "on SIGINT/SIGTERM, how long requests in flight may finish")
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=None,
        metavar="N",
        help="run N processor processes: worker i on the ext_proc port + i and the metrics"
        " port + i, a large-body worker for requests with a body of 1 MiB or more (ports +"
        " N + 1), and a parent that restarts them and counts the requests Envoy answered"
        " without one (its log on the ext_proc port + N, metrics on the metrics port + N);"
        " pair with `envoy-config --workers N` (default: one process, no parent)",
    )
    parser.add_argument(
        "--max-requests",
        type=worker_count,
        default=None,
        metavar="N",
        help="with --workers: replace a worker once it has counted N requests, draining it"
        " first (default: never)",
    )
    parser.add_argument(
        "--max-rss-mb",
        type=worker_count,
        default=None,
        metavar="MB",
        help="with --workers: replace a worker whose resident memory passes MB MiB,"
        " draining it first (default: never)",
    )
    parser.add_argument(
        "--wrap",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="wrap every processor in this callable (a ProcessorWrapper subclass or a"
        " function Processor -> Processor), inside the metrics wrapper; FILE.py:NAME also"
        " works; repeat to stack, the first outermost (default: none)",
    )
    parser.add_argument(
        "--routes",
        metavar="MODULE:NAME",
        help="a callable that takes the routing table and returns {path: processor"
        " factory} for the paths your own processors take over (see"
        " examples/subclass_processor.py); FILE.py:NAME also works (default: none)",
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serve ext_proc over TLS with this certificate"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the private key for --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    parser.add_argument(
        "--allow-remote-plaintext",
        action="store_true",
        help="allow plaintext ext_proc on a non-loopback address (its answers carry"
        " backend credentials; only on a trusted network)",
    )
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    # First, before any thread starts (docs/reliability.md, "Large bodies").
    use_one_arena()
    config = load_config(args.config)
    secrets = load_secrets(config, args.config)
    try:
        wraps = [load_wrap(spec) for spec in args.wrap]
        routes = load_routes(args.routes) if args.routes else None
    except PluginError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.workers is not None:
        from aigateway.extproc.ops.workers import serve_workers

        # The memory store is one file all workers share (docs/limits.md); Redis is
        # shared anyway.
        shared = bool(config.limits.rules) and config.limits.store == "memory"
        return serve_workers(args, config, shared_limits=shared)
    wrap: Wrap | None = compose(*wraps) if wraps else None
    options = ServeOptions(
        extproc=args.extproc_addr,
        metrics=args.metrics_addr,
        drain_timeout=args.drain_timeout,
        allow_remote_plaintext=args.allow_remote_plaintext,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        binder=bind_explained,
    )
    try:
        run_event_loop(run_gateway(config, secrets, options, wrap=wrap, routes=routes))
    except StartupError as exc:
        return fail(str(exc))
    sys.stderr.flush()
    return EXIT_OK
