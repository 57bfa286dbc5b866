"""Instructions per request and per stream, counted by callgrind (benchmarks/NOTES.md,
"Issue 23: ..."): deterministic, so two revisions compare on a loaded machine.

The servicer is driven in process by the test suite's fake Envoy (no gRPC), after a
warm-up, under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``: one run with
nothing measured, one with ``--requests`` non-streamed chat completions, one with
``--streams`` 64-token streams; each count is the difference to the empty run divided by
the number of requests or streams.

    .venv/bin/python -m benchmarks.instructions                  # this working tree
    .venv/bin/python -m benchmarks.instructions --checkout DIR --python DIR/venv/bin/python
    .venv/bin/python -m benchmarks.instructions --stream gemini  # a Gemini backend instead

``--stream gemini`` routes to a Gemini API backend: a non-streamed request, and a stream
whose usage grows on every chunk, as Google's does (benchmarks/NOTES.md, "Growing usage").

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
#: The same with one Gemini API backend and model (``--stream gemini``).
GEMINI_CONFIG = {
    "backends": [
        {
            "name": "google",
            "schema": "gcp-gemini",
            "endpoint": "http://127.0.0.1:8000",
            "auth": {"api_key": {"value": "gm-bench"}},
        }
    ],
    "models": [{"name": "gemini-2.5-flash", "backend": "google"}],
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


def gemini_stream_events() -> list[bytes]:
    """A 64-token answer as the Gemini API streams it (the shape of
    ``tests/translators/backends/test_gemini.py``'s recorded stream): every response
    carries the usage so far, the candidates' count growing by one. Kept here, not in
    ``benchmarks/micro/streams.py``: an older checkout's copy of that has no such stream."""
    from benchmarks.micro.streams import TOKENS, WORDS, compact

    events = []
    for i, word in enumerate(WORDS, 1):
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": word}], "role": "model"},
            "index": 0,
        }
        if i == TOKENS:
            candidate["finishReason"] = "STOP"
        usage = {
            "promptTokenCount": 27,
            "candidatesTokenCount": i,
            "totalTokenCount": 27 + 18 + i,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 27}],
            "thoughtsTokenCount": 18,
            "serviceTier": "standard",
        }
        doc = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "cWmNaqOEH9CRkdUP1bWcsQU",
        }
        events.append(b"data: " + compact(doc) + b"\r\n\r\n")
    return events


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


def gemini_response() -> bytes:
    """The same answer as the Gemini API's non-streamed JSON."""
    from benchmarks.micro.streams import TOKENS, WORDS, compact

    return compact(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "".join(WORDS)}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 27,
                "candidatesTokenCount": TOKENS,
                "totalTokenCount": 27 + 18 + TOKENS,
                "thoughtsTokenCount": 18,
            },
            "modelVersion": "gemini-2.5-flash",
            "responseId": "cWmNaqOEH9CRkdUP1bWcsQU",
        }
    )


def workload(
    variant: str, stream_of: str = "openai"
) -> tuple[Callable[[list[Any], int], None], list[Any], list[Any]]:
    """``run(messages, n)``, a non-streamed request's messages and a stream's, for the
    servicer of the checkout in ``cwd`` (also for profiling the same workload);
    ``stream_of``: ``openai``, or ``gemini`` (its usage growing on every chunk)."""
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

    config = parse_config(GEMINI_CONFIG if stream_of == "gemini" else CONFIG)
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
    events = openai_stream_events(include_usage=True)
    model = "gpt-4o-mini"
    if stream_of == "gemini":
        events, model = gemini_stream_events(), "gemini-2.5-flash"
        request[1] = fake_envoy.request_body(chat_request(model))
        request[3] = fake_envoy.response_body(gemini_response())
    stream = [
        fake_envoy.request_headers(extra=CLIENT_HEADERS),
        fake_envoy.request_body(chat_request(model, stream=True)),
        fake_envoy.response_headers(200, "text/event-stream"),
        *(fake_envoy.response_body(e, end_of_stream=False) for e in events),
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


def _child(variant: str, stream_of: str, requests: int, streams: int) -> None:
    """Runs in the checkout under measurement (``cwd``), under callgrind."""
    run, request, stream = workload(variant, stream_of)
    for _ in range(WARMUP):  # every cache and lazy import warm first
        run(request, 1)
        run(stream, 1)
    run(request, requests)
    run(stream, streams)


def _count(
    python: str, checkout: Path, variant: str, stream_of: str, requests: int, streams: int
) -> int:
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
                stream_of,
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
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument(
        "--variant", choices=("instrumented", "bare", "null"), default="instrumented"
    )
    parser.add_argument(
        "--stream",
        choices=("openai", "gemini"),
        default="openai",
        help="gemini: the Gemini API's stream, its usage growing on every chunk (and a"
        " non-streamed Gemini request)",
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--streams", type=int, default=40)
    args = parser.parse_args()
    runs = [(0, 0), (args.requests, 0)] + ([(0, args.streams)] if args.streams else [])
    # Once outside callgrind first: the runs must not differ by who compiled the .pyc.
    subprocess.run(
        [
            args.python,
            str(Path(__file__).resolve()),
            "--child",
            args.variant,
            args.stream,
            "0",
            "0",
        ],
        cwd=args.checkout,
        check=True,
    )
    # The counts do not depend on the machine's load: the runs go side by side.
    with ThreadPoolExecutor(len(runs)) as pool:
        counts = list(
            pool.map(
                lambda run: _count(args.python, args.checkout, args.variant, args.stream, *run),
                runs,
            )
        )
    per_request = (counts[1] - counts[0]) / args.requests
    print(f"{args.checkout} ({args.variant}, {args.stream})")
    print(f"  per non-streamed request: {per_request / 1e3:,.1f} k instructions")
    if args.streams:
        per_stream = (counts[2] - counts[0]) / args.streams
        # openai: 64 tokens, role, finish, usage, [DONE], the empty end of stream;
        # gemini: 64 tokens (the last with the finish reason), the empty end of stream.
        chunks = 65 if args.stream == "gemini" else 69
        print(f"  per 64-token stream:      {per_stream / 1e6:,.3f} M instructions")
        print(f"  per streamed chunk:       {(per_stream - per_request) / chunks / 1e3:,.1f} k")


if __name__ == "__main__":
    main()
