"""``aigateway mock-backend``: the mock LLM backend (every schema's wire format)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

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
answers OpenAI, Azure OpenAI, Bedrock and Anthropic requests in their real wire
formats. Request headers tune it (x-mock-output-tokens, x-mock-status, x-mock-fault,
...; see aigateway/extproc/ops/mock_backend/knobs.py)."""


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
    add_logging_flags(parser)


def run(args: argparse.Namespace) -> int:
    from aigateway.extproc.ops.mock_backend import AwsCredentials, create_app, serve_mock_backend

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
    listen: Address = args.listen
    if listen.is_unix:
        return fail("the mock backend listens on HOST:PORT only", EXIT_USAGE)

    def ready(host: str, port: int) -> None:
        shown = Address(host, port).url_host()
        print(f"aigateway mock backend ready on http://{shown}:{port}", file=sys.stderr, flush=True)

    async def serve() -> None:
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
        run_event_loop(serve())
    except OSError as exc:
        return fail(f"cannot listen on {listen}: {exc.strerror or exc}")
    return EXIT_OK
