"""``aigateway mock-backend``: the mock LLM backend (every schema's wire format)."""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from pathlib import Path

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.app import install_stop_signals, run_event_loop
from aigateway.extproc.ops.cli.common import (
    DEFAULT_MOCK_ADDR,
    EXIT_OK,
    EXIT_USAGE,
    add_logging_flags,
    address,
    fail,
)

HELP = "run the mock LLM backend (every schema's wire format)"
DESCRIPTION = """\
Run the deterministic mock backend that `up`, the tests and the benchmarks use: it
answers OpenAI, Azure OpenAI, Bedrock, Anthropic, Gemini API and Vertex AI requests in
their real wire formats, and serves a Google OAuth2 token endpoint at /token. Request
headers tune it (x-mock-output-tokens, x-mock-status, x-mock-fault, ...; see
aigateway/mock_backend/knobs.py)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen", type=address, default=DEFAULT_MOCK_ADDR, metavar="ADDR", help="HOST:PORT"
    )
    parser.add_argument(
        "--aws-region",
        metavar="REGION",
        help="check Bedrock SigV4 signatures made with AWS_ACCESS_KEY_ID /"
        " AWS_SECRET_ACCESS_KEY from the environment, for this region (default: no check)",
    )
    parser.add_argument(
        "--gemini-api-key-env",
        metavar="NAME",
        help="require x-goog-api-key on the Gemini routes to equal the value of environment"
        " variable NAME (default: any key)",
    )
    parser.add_argument(
        "--gcp-service-account",
        action="append",
        default=[],
        metavar="FILE",
        help="a service-account key file (JSON) whose signed JWTs /token accepts; repeat"
        " for several (default: none, so Vertex AI routes refuse every request)",
    )
    parser.add_argument(
        "--gcp-token-lifetime",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="lifetime of the access tokens /token issues",
    )
    parser.add_argument(
        "--path-prefix",
        metavar="PREFIX",
        help="serve the provider routes under PREFIX, e.g. /api (default: at the root)",
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (default: HTTP)"
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the private key for --tls-cert")
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    from aigateway.mock_backend import (
        AwsCredentials,
        GcpServiceAccount,
        create_app,
        serve_mock_backend,
    )

    credentials = None
    if args.aws_region:
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not key or not secret:
            return fail(
                "--aws-region needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set", EXIT_USAGE
            )
        credentials = AwsCredentials(
            key, secret, args.aws_region, session_token=os.environ.get("AWS_SESSION_TOKEN")
        )
    gemini_key = None
    if args.gemini_api_key_env:
        gemini_key = os.environ.get(args.gemini_api_key_env)
        if not gemini_key:
            return fail(f"--gemini-api-key-env: {args.gemini_api_key_env} is not set", EXIT_USAGE)
    accounts = []
    for path in args.gcp_service_account:
        try:
            accounts.append(GcpServiceAccount.from_key_file(Path(path).read_text()))
        except (OSError, ValueError, KeyError, ImportError) as exc:
            return fail(f"--gcp-service-account {path}: {exc}", EXIT_USAGE)
    context = None
    if (args.tls_cert is None) != (args.tls_key is None):
        return fail("--tls-cert and --tls-key go together", EXIT_USAGE)
    if args.tls_cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            return fail(f"--tls-cert/--tls-key: {exc}", EXIT_USAGE)
    try:
        app = create_app(
            aws_credentials=credentials,
            gemini_api_key=gemini_key,
            gcp_service_accounts=accounts,
            gcp_token_lifetime=args.gcp_token_lifetime,
            path_prefix=args.path_prefix or "",
        )
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    listen: Address = args.listen
    if listen.is_unix:
        return fail("the mock backend listens on HOST:PORT only", EXIT_USAGE)

    def ready(host: str, port: int) -> None:
        shown = Address(host, port).url_host()
        scheme = "https" if context is not None else "http"
        print(
            f"aigateway mock backend ready on {scheme}://{shown}:{port}",
            file=sys.stderr,
            flush=True,
        )

    async def serve() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await serve_mock_backend(
            listen.bind_host,
            listen.port,
            app=app,
            ready=ready,
            stop=stop,
            ssl_context=context,
        )

    try:
        run_event_loop(serve())
    except OSError as exc:
        return fail(f"cannot listen on {listen}: {exc.strerror or exc}")
    return EXIT_OK
