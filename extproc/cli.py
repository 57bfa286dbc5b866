"""The ``aigateway`` command line (DESIGN §6)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

import yaml

from extproc.addresses import Address
from extproc.config import ConfigError, GatewayConfig, ResolvedSecrets, load_config, load_secrets
from extproc.router import ProcessorWrap

log = logging.getLogger("aigateway")

DEFAULT_EXTPROC = "127.0.0.1:1063"
DEFAULT_METRICS = ":9190"
DEFAULT_LISTEN = "127.0.0.1:10000"
DEFAULT_ADMIN = "127.0.0.1:9901"
DEFAULT_MOCK = "127.0.0.1:8000"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _address(text: str) -> Address:
    try:
        return Address.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _parser() -> argparse.ArgumentParser:
    from extproc.logs import LEVELS

    parser = argparse.ArgumentParser(
        prog="aigateway",
        description="LLM gateway data plane: an Envoy external processor for OpenAI-style APIs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def logging_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-level", choices=LEVELS, default="info")
        p.add_argument("--log-format", choices=("text", "json"), default="text")

    serve = sub.add_parser("serve", help="run the ext_proc gRPC server and the metrics endpoint")
    serve.add_argument("--config", required=True, metavar="FILE")
    serve.add_argument(
        "--extproc-addr",
        type=_address,
        default=DEFAULT_EXTPROC,
        metavar="ADDR",
        help=f"ext_proc gRPC listen address (default {DEFAULT_EXTPROC})",
    )
    serve.add_argument(
        "--metrics-addr",
        type=_address,
        default=DEFAULT_METRICS,
        metavar="ADDR",
        help=f"Prometheus /metrics listen address (default {DEFAULT_METRICS})",
    )
    serve.add_argument(
        "--drain-timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long in-flight requests may finish (default 10)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="serve ext_proc over TLS with this cert")
    serve.add_argument("--tls-key", metavar="FILE", help="the private key for --tls-cert")
    serve.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    serve.add_argument(
        "--allow-remote-plaintext",
        action="store_true",
        help="allow plaintext ext_proc on a non-loopback address",
    )
    serve.add_argument(
        "--wrap",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="wrap every processor in this callable (a ProcessorWrapper subclass or a"
        " function Processor -> Processor), inside the metrics wrapper; repeat to stack,"
        " the first outermost; FILE.py:NAME also works",
    )
    logging_flags(serve)

    envoy = sub.add_parser("envoy-config", help="print the Envoy bootstrap for a config (YAML)")
    envoy.add_argument("--config", required=True, metavar="FILE")
    envoy.add_argument(
        "--listen",
        type=_address,
        default=DEFAULT_LISTEN,
        metavar="ADDR",
        help=f"Envoy's client listener (default {DEFAULT_LISTEN})",
    )
    envoy.add_argument(
        "--extproc-addr",
        type=_address,
        action="append",
        metavar="ADDR",
        help=f"where the processor listens (default {DEFAULT_EXTPROC});"
        " repeat for several processes",
    )
    envoy.add_argument(
        "--admin-addr",
        type=_address,
        default=DEFAULT_ADMIN,
        metavar="ADDR",
        help=f"Envoy's admin interface (default {DEFAULT_ADMIN})",
    )
    envoy.add_argument(
        "--no-access-log", action="store_true", help="leave out the JSON access log on stdout"
    )

    up = sub.add_parser(
        "up",
        help="run the whole gateway: processor, metrics, Envoy"
        " (and the mock backend for the demo config)",
    )
    up.add_argument(
        "--config",
        metavar="FILE",
        help="gateway config (default: a built-in demo on the mock backend)",
    )
    up.add_argument("--listen", type=_address, default=DEFAULT_LISTEN, metavar="ADDR")
    up.add_argument("--extproc-addr", type=_address, default=DEFAULT_EXTPROC, metavar="ADDR")
    up.add_argument("--metrics-addr", type=_address, default=DEFAULT_METRICS, metavar="ADDR")
    up.add_argument("--admin-addr", type=_address, default=DEFAULT_ADMIN, metavar="ADDR")
    up.add_argument(
        "--mock-addr",
        type=_address,
        default=DEFAULT_MOCK,
        metavar="ADDR",
        help=f"where the demo's mock backend listens (default {DEFAULT_MOCK})",
    )
    up.add_argument("--drain-timeout", type=_positive, default=10.0, metavar="SECONDS")
    logging_flags(up)

    mock = sub.add_parser("mock-backend", help="run the mock LLM backend (all schemas)")
    mock.add_argument(
        "--listen",
        type=_address,
        default=DEFAULT_MOCK,
        metavar="ADDR",
        help=f"listen address (default {DEFAULT_MOCK})",
    )
    mock.add_argument(
        "--aws-region",
        metavar="REGION",
        help="check Bedrock SigV4 signatures made with AWS_ACCESS_KEY_ID /"
        " AWS_SECRET_ACCESS_KEY from the environment, for this region",
    )
    logging_flags(mock)

    check = sub.add_parser("check-config", help="validate a config file and its secrets")
    check.add_argument("--config", required=True, metavar="FILE")
    return parser


def _load(path: str) -> tuple[GatewayConfig, ResolvedSecrets]:
    config = load_config(path)
    return config, load_secrets(config, path)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (the ``fast`` extra), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _wraps(specs: list[str]) -> ProcessorWrap | None:
    from extproc.app import compose
    from extproc.plugins import load_wrap

    return compose(*(load_wrap(spec) for spec in specs)) if specs else None


def cmd_serve(args: argparse.Namespace) -> int:
    from extproc.app import ServeOptions, StartupError, serve
    from extproc.plugins import PluginError

    config, secrets = _load(args.config)
    try:
        wrap = _wraps(args.wrap)
    except PluginError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = ServeOptions(
        extproc=args.extproc_addr,
        metrics=args.metrics_addr,
        drain_timeout=args.drain_timeout,
        allow_remote_plaintext=args.allow_remote_plaintext,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
    )
    try:
        _run(serve(config, secrets, options, wrap=wrap))
    except StartupError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_envoy_config(args: argparse.Namespace) -> int:
    from extproc.envoy_config import EnvoyOptions, build_bootstrap

    config = load_config(args.config)
    options = EnvoyOptions(
        listen=args.listen,
        extproc=args.extproc_addr or [Address.parse(DEFAULT_EXTPROC)],
        admin=args.admin_addr,
        access_log=not args.no_access_log,
    )
    sys.stdout.write(yaml.safe_dump(build_bootstrap(config, options), sort_keys=False))
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    config, _ = _load(args.config)
    print(f"{args.config}: ok ({len(config.backends)} backend(s), {len(config.models)} model(s))")
    for model in config.models:
        backend = config.backend(model.backend)
        upstream = f" as {model.backend_model}" if model.backend_model else ""
        print(f"  {model.name} -> {backend.name} ({backend.schema_}, {backend.endpoint}){upstream}")
    return EXIT_OK


def cmd_mock_backend(args: argparse.Namespace) -> int:
    import os

    from extproc.app import install_stop_signals
    from extproc.mock_backend import AwsCredentials, create_app, serve_mock_backend

    credentials = None
    if args.aws_region:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            print(
                "aigateway: --aws-region needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set",
                file=sys.stderr,
            )
            return EXIT_USAGE
        credentials = AwsCredentials(
            key, secret, args.aws_region, session_token=os.environ.get("AWS_SESSION_TOKEN")
        )
    listen: Address = args.listen
    if listen.is_unix:
        print("aigateway: the mock backend listens on HOST:PORT only", file=sys.stderr)
        return EXIT_USAGE

    def ready(host: str, port: int) -> None:
        shown = Address(host, port).url_host()
        print(f"aigateway mock backend ready on http://{shown}:{port}", file=sys.stderr, flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve_mock_backend(
            listen.bind_host,
            listen.port,
            app=create_app(aws_credentials=credentials),
            ready=ready,
            stop=stop,
        )

    try:
        _run(run())
    except OSError as exc:
        print(f"aigateway: cannot listen on {listen}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    from extproc.up import run_up

    return run_up(args)


COMMANDS = {
    "serve": cmd_serve,
    "envoy-config": cmd_envoy_config,
    "check-config": cmd_check_config,
    "mock-backend": cmd_mock_backend,
    "up": cmd_up,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if hasattr(args, "log_level"):
        from extproc.logs import setup_logging

        setup_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"aigateway: invalid config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
