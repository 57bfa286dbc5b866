"""Instructions per request and per stream, counted by callgrind (benchmarks/NOTES.md,
"Issue 23: ..."): deterministic, so two revisions compare on a loaded machine.

The servicer is driven in process by the test suite's fake Envoy (no gRPC), after a
warm-up, under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``: one run with
nothing measured, one with ``--requests`` non-streamed chat completions, one with
``--streams`` 64-token streams; each count is the difference to the empty run divided by
the number of requests or streams.

    .venv/bin/python -m benchmarks.instructions                  # this working tree
    .venv/bin/python -m benchmarks.instructions --checkout DIR --python DIR/venv/bin/python

``--checkout`` runs another revision's code (``git archive REV | tar -x -C DIR``, or the
paired benchmark's ``$TMPDIR/aigateway-base/<commit>/src``) with its own interpreter; the
revisions since bac2f13 are understood (``extproc.app`` or ``aigateway.extproc``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The server's config: one OpenAI backend, one model, no limits (the default's shape).
CONFIG = {
    "backends": [
        {
            "name": "static",
            "schema": "openai",
            "endpoint": "http://127.0.0.1:8000",
            "auth": {"api_key": {"value": "sk-bench"}},
        }
    ],
    "models": [{"name": "gpt-4o-mini", "backend": "static"}],
}
#: What the OpenAI SDK sends besides the fake Envoy's own headers.
CLIENT_HEADERS = [
    ("authorization", "Bearer client"),
    ("user-agent", "OpenAI/Python 1.54.0"),
    ("accept", "application/json"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "1.54.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.12.3"),
    ("x-stainless-retry-count", "0"),
]
WARMUP = 20
#: Where the servicer's parts live: today, and in bac2f13's layout.
_LAYOUTS = (
    (
        "aigateway.extproc.gateway.app",
        "aigateway.extproc.gateway.backends",
        "aigateway.extproc.gateway.config",
        "aigateway.extproc.framework.server",
        "tests.extproc.framework.fake_envoy",
    ),
    (
        "extproc.app",
        "extproc.backends",
        "extproc.config",
        "extproc.server",
        "tests.extproc.fake_envoy",
    ),
)


def workload(variant: str) -> tuple[Callable[[list[Any], int], None], list[Any], list[Any]]:
    """``run(messages, n)``, a non-streamed request's messages and a stream's, for the
    servicer of the checkout in ``cwd`` (also for profiling the same workload)."""
    import grpc

    sys.path.insert(0, os.getcwd())
    for layout in _LAYOUTS:
        try:
            app, backends, config_module, server, fake_envoy = (
                importlib.import_module(name) for name in layout
            )
            break
        except ImportError:
            continue
    else:
        raise SystemExit(f"no known layout in {os.getcwd()}")
    build_router, build_telemetry = app.build_router, app.build_telemetry
    RoutingTable, ExternalProcessorServicer = (
        backends.RoutingTable,
        server.ExternalProcessorServicer,
    )
    ResolvedSecrets, parse_config = config_module.ResolvedSecrets, config_module.parse_config
    from benchmarks.micro.streams import CHAT_COMPLETION, chat_request, openai_stream_events

    config = parse_config(CONFIG)
    table = RoutingTable(config, ResolvedSecrets(config, Path()))
    # build_telemetry took the routing table until the config was enough.
    telemetry_of = "config" in inspect.signature(build_telemetry).parameters
    telemetry = build_telemetry(config if telemetry_of else table)
    wrap = telemetry.instrumentation.wrap if variant == "instrumented" else None
    if "instrument" in inspect.signature(build_router).parameters:
        router = build_router(table, instrument=wrap)
    else:
        router = build_router(table, wrap=wrap)
    service = ExternalProcessorServicer(router)
    if variant == "null":  # the floor: this tree's do-nothing servicer, same harness
        from benchmarks.bare_serve import NullServicer

        service = NullServicer()
    request = [
        fake_envoy.request_headers(extra=CLIENT_HEADERS),
        fake_envoy.request_body(chat_request()),
        fake_envoy.response_headers(200, "application/json"),
        fake_envoy.response_body(CHAT_COMPLETION),
    ]
    stream = [
        fake_envoy.request_headers(extra=CLIENT_HEADERS),
        fake_envoy.request_body(chat_request(stream=True)),
        fake_envoy.response_headers(200, "text/event-stream"),
        *(
            fake_envoy.response_body(e, end_of_stream=False)
            for e in openai_stream_events(include_usage=True)
        ),
        fake_envoy.response_body(b"", end_of_stream=True),
    ]
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()

    def run(messages: list[Any], n: int) -> None:
        for _ in range(n):
            context = fake_envoy.FakeContext()
            for message in (*messages, grpc.aio.EOF):  # type: ignore[attr-defined]
                context.inbox.put_nowait(message)
            loop.run_until_complete(service.Process(None, context))
            while not context.outbox.empty():
                answer = context.outbox.get_nowait()
                if answer.WhichOneof("response") == "immediate_response":
                    raise SystemExit(f"the processor refused: {answer}")

    return run, request, stream


def _child(variant: str, requests: int, streams: int) -> None:
    """Runs in the checkout under measurement (``cwd``), under callgrind."""
    run, request, stream = workload(variant)
    for _ in range(WARMUP):  # every cache and lazy import warm first
        run(request, 1)
        run(stream, 1)
    run(request, requests)
    run(stream, streams)


def _count(python: str, checkout: Path, variant: str, requests: int, streams: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out",
                python,
                str(Path(__file__).resolve()),
                "--child",
                variant,
                str(requests),
                str(streams),
            ],
            cwd=checkout,
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed:\n{out.stdout}\n{out.stderr}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--variant", choices=("instrumented", "bare", "null"), default="instrumented"
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--streams", type=int, default=40)
    args = parser.parse_args()
    runs = [(0, 0), (args.requests, 0)] + ([(0, args.streams)] if args.streams else [])
    # Once outside callgrind first: the runs must not differ by who compiled the .pyc.
    subprocess.run(
        [args.python, str(Path(__file__).resolve()), "--child", args.variant, "0", "0"],
        cwd=args.checkout,
        check=True,
    )
    # The counts do not depend on the machine's load: the runs go side by side.
    with ThreadPoolExecutor(len(runs)) as pool:
        counts = list(
            pool.map(lambda run: _count(args.python, args.checkout, args.variant, *run), runs)
        )
    per_request = (counts[1] - counts[0]) / args.requests
    print(f"{args.checkout} ({args.variant})")
    print(f"  per non-streamed request: {per_request / 1e3:,.1f} k instructions")
    if args.streams:
        per_stream = (counts[2] - counts[0]) / args.streams
        chunks = 69  # 64 tokens, role, finish, usage, [DONE], the empty end of stream
        print(f"  per 64-token stream:      {per_stream / 1e6:,.3f} M instructions")
        print(f"  per streamed chunk:       {(per_stream - per_request) / chunks / 1e3:,.1f} k")


if __name__ == "__main__":
    main()
