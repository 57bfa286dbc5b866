"""The ``aigateway`` command line (DESIGN §6)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
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


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
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
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="run N processor processes: worker i on the ext_proc port + i and the metrics"
        " port + i (default 1); pair with `envoy-config --workers N`",
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
    envoy.add_argument(
        "--extproc-tls-ca",
        metavar="FILE",
        help="connect to the processor over TLS, trusting this CA (for serve --tls-cert)",
    )
    envoy.add_argument(
        "--extproc-tls-sni", metavar="NAME", help="SNI to send and DNS name to require"
    )
    envoy.add_argument(
        "--extproc-tls-cert",
        metavar="FILE",
        help="client certificate for a processor that requires one (serve --tls-client-ca)",
    )
    envoy.add_argument("--extproc-tls-key", metavar="FILE", help="the key for --extproc-tls-cert")
    envoy.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="each --extproc-addr stands for `serve --workers N`: N endpoints on consecutive"
        " ports (default 1)",
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

    health = sub.add_parser(
        "health",
        help="probe a running processor's gRPC health (exit 0 when SERVING); works on unix"
        " sockets, which Kubernetes' own grpc probes cannot dial",
    )
    health.add_argument("--extproc-addr", type=_address, default=DEFAULT_EXTPROC, metavar="ADDR")
    health.add_argument(
        "--live",
        action="store_true",
        help="exit 0 whenever the processor answers, also while it drains (liveness)",
    )
    health.add_argument("--timeout", type=_positive, default=3.0, metavar="SECONDS")
    health.add_argument(
        "--tls-ca", metavar="FILE", help="the processor serves TLS signed by this CA"
    )

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
    if args.workers > 1:
        return _serve_workers(args)
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


def _serve_workers(args: argparse.Namespace) -> int:
    """``serve --workers N``: the config and wrappers are checked here once, then each
    worker is this same command with its own addresses (see ``extproc.workers``)."""
    from extproc.workers import Supervisor, worker_addresses

    extproc: Address = args.extproc_addr
    if not extproc.is_unix and extproc.port == 0:
        print("aigateway: --workers needs a fixed --extproc-addr port", file=sys.stderr)
        return EXIT_USAGE
    try:
        extprocs = worker_addresses(extproc, args.workers)
        metrics = worker_addresses(args.metrics_addr, args.workers)
    except ValueError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Every serve flag but --workers, passed on as given (keep in step with the parser).
    common = ["--config", args.config, "--drain-timeout", repr(args.drain_timeout)]
    common += ["--log-level", args.log_level, "--log-format", args.log_format]
    for flag, value in (
        ("--tls-cert", args.tls_cert),
        ("--tls-key", args.tls_key),
        ("--tls-client-ca", args.tls_client_ca),
    ):
        if value:
            common += [flag, value]
    if args.allow_remote_plaintext:
        common.append("--allow-remote-plaintext")
    for spec in args.wrap:
        common += ["--wrap", spec]
    serve = [sys.executable, "-m", "extproc", "serve", *common]
    commands = [
        [*serve, "--extproc-addr", str(e), "--metrics-addr", str(m)]
        for e, m in zip(extprocs, metrics, strict=True)
    ]
    code = 1

    async def run() -> None:
        nonlocal code
        code = await Supervisor(commands, drain_timeout=args.drain_timeout).run()

    _run(run())
    return code


def cmd_envoy_config(args: argparse.Namespace) -> int:
    from extproc.envoy_config import EnvoyOptions, ExtprocTls, build_bootstrap
    from extproc.workers import worker_addresses

    config = load_config(args.config)
    try:
        extproc = [
            worker
            for address in args.extproc_addr or [Address.parse(DEFAULT_EXTPROC)]
            for worker in worker_addresses(address, args.workers)
        ]
    except ValueError as exc:
        print(f"aigateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if (args.extproc_tls_cert is None) != (args.extproc_tls_key is None):
        print("aigateway: --extproc-tls-cert and --extproc-tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    tls_flags = (args.extproc_tls_sni, args.extproc_tls_cert)
    if args.extproc_tls_ca is None and any(f is not None for f in tls_flags):
        print("aigateway: the --extproc-tls-* flags need --extproc-tls-ca", file=sys.stderr)
        return EXIT_USAGE
    tls = None
    if args.extproc_tls_ca is not None:
        tls = ExtprocTls(
            ca=os.path.abspath(args.extproc_tls_ca),
            sni=args.extproc_tls_sni,
            cert=os.path.abspath(args.extproc_tls_cert) if args.extproc_tls_cert else None,
            key=os.path.abspath(args.extproc_tls_key) if args.extproc_tls_key else None,
        )
    options = EnvoyOptions(
        listen=args.listen,
        extproc=extproc,
        admin=args.admin_addr,
        access_log=not args.no_access_log,
        extproc_tls=tls,
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


def cmd_health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from extproc.server import SERVICE_NAME

    address: Address = args.extproc_addr
    target = address.grpc_target() if address.is_unix else f"{address.url_host()}:{address.port}"
    try:
        if args.tls_ca:
            with open(args.tls_ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(f.read())
            channel = grpc.secure_channel(target, credentials)
        else:
            channel = grpc.insecure_channel(target)
    except OSError as exc:
        print(f"aigateway: cannot read {args.tls_ca}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"aigateway: {address}: {exc.code().name}", file=sys.stderr)
            return EXIT_FAILED
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address}: {status}")
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return EXIT_OK if serving or args.live else EXIT_FAILED


def cmd_up(args: argparse.Namespace) -> int:
    from extproc.up import run_up

    return run_up(args)


COMMANDS = {
    "serve": cmd_serve,
    "envoy-config": cmd_envoy_config,
    "check-config": cmd_check_config,
    "health": cmd_health,
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
