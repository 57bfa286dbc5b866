"""The accounting matrix: every backend schema (rows) against every way a streamed request
ends in the real world (columns), through the real Envoy, for each client API (chat
completions; then the Responses and Messages APIs, whose rows are the same schemas and
whose terminal events are their own). Each case asserts the exact deltas of requests by
status, tokens by type and latency observation counts, and the access-log line
(docs/architecture.md, "Accounting rules").

Upstreams here behave as real ones do, not as our mock does by default: writes split at
odd byte offsets, CRLF line ends, keep-alive comments and pings between events, and the
end of the body arriving well after the last event. Each case waits for its own ext_proc
stream to end (the processor's debug log says so) before it reads the metrics, so a
late second record of the same request would be seen.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.stack import (
    BEDROCK_MODEL_ID,
    VERTEX_CLAUDE_MODEL,
    VERTEX_GEMINI_MODEL,
    Stack,
    default_config,
    running,
    wait_until,
)
from tests.e2e.test_metrics import Key, delta, snapshot

PROMPT = "one two three four"  # the mock counts 4 prompt tokens
PROMPT_TOKENS = 4
OUTPUT_TOKENS = 6
# The shapes of real upstreams, on every case.
REAL_WORLD = {"x-mock-split": "7", "x-mock-crlf": "1", "x-mock-keepalive": "1"}
TIMEOUT_SECONDS = 1


FULL = {
    "prompt": PROMPT_TOKENS,
    "completion": OUTPUT_TOKENS,
    "total": PROMPT_TOKENS + OUTPUT_TOKENS,
}
NONE: dict[str, int] = {}
#: Anthropic's message_start reports the input and one output token before any content.
MESSAGE_START = {"prompt": PROMPT_TOKENS, "completion": 1, "total": PROMPT_TOKENS + 1}
#: The mock's Gemini API sends the prompt's usageMetadata with every chunk, the output's
#: with the last; Vertex AI counts nothing before its last response.
GEMINI_CHUNK = {"prompt": PROMPT_TOKENS, "total": PROMPT_TOKENS}


@dataclass(frozen=True)
class Row:
    schema: str
    model: str
    backend: str
    upstream_path: str
    #: What the backend reported by the first content chunk (then for any cut-short end).
    first_usage: dict[str, int]
    #: What it reported when the stream is cut just before its terminal event.
    truncated_usage: dict[str, int]


VERTEX = "/v1/projects/e2e-project/locations/us-central1/publishers"
ROWS = [
    Row("openai", "gpt-4o-mini", "mock-openai", "/v1/chat/completions", NONE, FULL),
    Row(
        "azure-openai",
        "azure-gpt-4o",
        "mock-azure",
        "/openai/deployments/gpt-4o-deployment/chat/completions?api-version=2024-10-21",
        NONE,
        FULL,
    ),
    Row(
        "aws-bedrock",
        "bedrock-claude",
        "mock-bedrock",
        f"/model/{BEDROCK_MODEL_ID.replace(':', '%3A')}/converse-stream",
        NONE,
        NONE,  # usage is in `metadata`, after messageStop: both cut off
    ),
    Row("anthropic", "claude-sonnet", "mock-anthropic", "/v1/messages", MESSAGE_START, FULL),
    Row(
        "gcp-gemini",
        "gemini-flash",
        "mock-gemini",
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        GEMINI_CHUNK,
        GEMINI_CHUNK,
    ),
    Row(
        "gcp-vertex-ai",
        "vertex-gemini",
        "mock-vertex",
        f"{VERTEX}/google/models/{VERTEX_GEMINI_MODEL}:streamGenerateContent?alt=sse",
        NONE,
        NONE,
    ),
    Row(
        "gcp-vertex-ai",
        "vertex-claude",
        "mock-vertex",
        f"{VERTEX}/anthropic/models/{VERTEX_CLAUDE_MODEL}:streamRawPredict",
        MESSAGE_START,
        FULL,
    ),
]


def full_usage() -> dict[str, int]:
    return dict(FULL)


def first_usage(row: Row) -> dict[str, int]:
    return dict(row.first_usage)


@dataclass(frozen=True)
class Expect:
    status: str
    tokens: dict[str, int]
    first_token: int = 1
    inter_token: int = 0
    #: What the client sees: "complete" (all words, [DONE]), "error-event", "broken".
    client: str = "complete"
    error: str | None = None  # the access log's `error`


@dataclass(frozen=True)
class Ending:
    headers: dict[str, str]
    client: str  # how the client reads: "all", "sdk", "until-terminal", "leave"
    expect: Callable[[Row], Expect]
    timeout_backend: bool = False


ENDINGS: dict[str, Ending] = {
    "clean end": Ending({}, "all", lambda row: Expect("success", full_usage(), inter_token=1)),
    "end of body 300 ms after the last event": Ending(
        {"x-mock-tail-ms": "300", "x-mock-hold-end": "KEY"},
        "until-terminal",
        lambda row: Expect("success", full_usage(), inter_token=1),
    ),
    "client hangs up right after the terminal event": Ending(
        {"x-mock-hold-end": "KEY"},
        "sdk",
        lambda row: Expect("success", full_usage(), inter_token=1),
    ),
    "client hangs up mid-stream": Ending(
        {"x-mock-output-tokens": "40", "x-mock-itl-ms": "50"},
        "leave",
        lambda row: Expect("error", first_usage(row), client="left"),
    ),
    "upstream error event": Ending(
        {"x-mock-fault": "exception"},
        "all",
        lambda row: Expect(
            "error", first_usage(row), client="error-event", error="upstream_stream_error"
        ),
    ),
    "truncated stream": Ending(
        {"x-mock-fault": "truncate"},
        "all",
        lambda row: Expect(
            "error",
            dict(row.truncated_usage),
            inter_token=1 if row.truncated_usage.get("completion", 0) > 1 else 0,
            client="error-event",
            error="upstream_truncated",
        ),
    ),
    "upstream reset": Ending(
        {"x-mock-fault": "reset", "x-mock-itl-ms": "100", "x-mock-fault-after": "4"},
        "all",
        lambda row: Expect("error", first_usage(row), client="broken"),
    ),
    "upstream timeout": Ending(
        {"x-mock-itl-ms": "700"},
        "all",
        lambda row: Expect("error", first_usage(row), client="broken"),
        timeout_backend=True,
    ),
}


def matrix_config(mock_port: int) -> dict[str, Any]:
    """The e2e config, plus a copy of each row's backend with a short timeout."""
    config = default_config(mock_port)
    backends = {b["name"]: b for b in config["backends"]}
    models = {m["name"]: m for m in config["models"]}
    for row in ROWS:
        slow_name = row.backend + "-t"
        if slow_name not in backends:
            slow = {**backends[row.backend], "name": slow_name, "timeout_seconds": TIMEOUT_SECONDS}
            backends[slow_name] = slow
            config["backends"].append(slow)
        model = {**models[row.model], "name": row.model + "-t", "backend": slow_name}
        config["models"].append(model)
    config["metrics"] = {"schema": "both"}  # the GenAI families follow the same rules
    return config


@pytest.fixture(scope="module")
def mstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        tmp_path_factory.mktemp("matrix"),
        config_factory=matrix_config,
        serve_args=["--log-level", "debug"],
    )
    with running(stack) as s:
        yield s


# -- the client's side ---------------------------------------------------------------


@dataclass
class Seen:
    words: int = 0
    done: bool = False
    error_event: bool = False
    broken: bool = False
    chunks: list[bytes] = field(default_factory=list)


def release(stack: Stack, key: str) -> None:
    req = urllib.request.Request(f"{stack.mock_url}/_mock/release/{key}", method="POST")
    urllib.request.urlopen(req, timeout=5).close()


def read_events(lines: Iterator[str], seen: Seen, *, until_terminal: bool) -> None:
    for line in lines:
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            seen.done = True
            if until_terminal:
                return
            continue
        doc = json.loads(data)
        if "error" in doc:
            seen.error_event = True
        for choice in doc.get("choices") or []:
            seen.words += len((choice["delta"].get("content") or "").split())


def send(
    stack: Stack, row: Row, ending: Ending, request_id: str, counted: Callable[[], None]
) -> Seen:
    model = row.model + ("-t" if ending.timeout_backend else "")
    key = request_id
    headers = {
        "x-request-id": request_id,
        "x-mock-output-tokens": str(OUTPUT_TOKENS),
        **REAL_WORLD,
        **{k: (key if v == "KEY" else v) for k, v in ending.headers.items()},
    }
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    seen = Seen()
    if ending.client == "sdk":
        # The official client: it closes its response as soon as it has [DONE].
        client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
        for chunk in client.chat.completions.create(
            model=model, messages=body["messages"], stream=True, extra_headers=headers
        ):
            if chunk.choices:
                seen.words += len((chunk.choices[0].delta.content or "").split())
        seen.done = True
        counted()  # while the upstream still holds the end of its body
        release(stack, key)
        return seen
    url = f"{stack.base_url}/v1/chat/completions"
    timeout = httpx.Timeout(30)
    with httpx.Client(timeout=timeout) as http:
        try:
            with http.stream("POST", url, json=body, headers=headers) as response:
                assert response.status_code == 200, response.read()
                lines = response.iter_lines()
                if ending.client == "leave":
                    for line in lines:
                        if '"content":"' in line and '"content":""' not in line:
                            return seen  # the connection closes with the body unread
                    raise AssertionError("the stream ended before its first word")
                if ending.client == "until-terminal":
                    read_events(lines, seen, until_terminal=True)
                    assert seen.done
                    counted()  # before the upstream has ended its body
                    release(stack, key)
                read_events(lines, seen, until_terminal=False)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            seen.broken = True
    return seen


# -- the gateway's side --------------------------------------------------------------


def stream_ended(stack: Stack, request_id: str) -> bool:
    log = stack.procs["serve"].stderr.read_text(errors="replace")
    return f"request {request_id}: stream ended" in log


def access_log(stack: Stack, request_id: str) -> dict[str, Any] | None:
    # Whole lines only: the last one may be half written when read.
    for line in stack.procs["envoy"].stdout.read_text(errors="replace").split("\n")[:-1]:
        if request_id in line and line.startswith("{"):
            doc = json.loads(line)
            if doc.get("request_id") == request_id:
                return dict(doc)
    return None


def genai_grown(
    before: dict[Key, float], after: dict[Key, float], model: str
) -> Callable[[str], dict[tuple[tuple[str, str], ...], float]]:
    """Per label set, how much a GenAI family's ``name`` grew for this request model.
    An empty label is no label (the exporter gives every series of a family the labels
    any of them has, e.g. ``error_type=""`` on successes once a failure is recorded)."""

    def series(snapshot: dict[Key, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
        out: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
        for (sample, labels), value in snapshot.items():
            if sample == name and dict(labels)["gen_ai_request_model"] == model:
                out[tuple((k, v) for k, v in labels if v)] += value
        return out

    def grown(name: str) -> dict[tuple[tuple[str, str], ...], float]:
        old, new = series(before, name), series(after, name)
        return {k: v - old.get(k, 0.0) for k, v in new.items() if v != old.get(k, 0.0)}

    return grown


@dataclass
class Case:
    """One matrix case after it ran: what was expected, and the metrics around it."""

    expect: Expect
    backend: str
    model: str
    before: dict[Key, float]
    after: dict[Key, float]
    line: dict[str, Any]


Sender = Callable[[str, Callable[[], None]], Seen]


def run_case(stack: Stack, row: Row, ending: Ending, send_one: Sender, path: str, api: str) -> Case:
    """Send one request (``send_one(request_id, counted)``), wait for its ext_proc stream
    to end, then check what every client API shares: requests by status, tokens by type,
    latency observations, what the client saw and the access-log line."""
    expect = ending.expect(row)
    backend = row.backend + ("-t" if ending.timeout_backend else "")
    model = row.model + ("-t" if ending.timeout_backend else "")
    only = (backend, model)
    request_id = str(uuid.uuid4())
    before = snapshot(stack.metrics_text())

    def counted() -> None:
        def recorded() -> bool:
            after = snapshot(stack.metrics_text())
            return bool(delta(before, after, "aigateway_requests_total", only))

        wait_until("the request to be counted", recorded, timeout=20)

    seen = send_one(request_id, counted)
    wait_until("its ext_proc stream to end", lambda: stream_ended(stack, request_id), 30)
    wait_until("its access log line", lambda: access_log(stack, request_id) is not None, 30)
    after = snapshot(stack.metrics_text())

    def grown(name: str) -> dict[tuple[str, ...], float]:
        return delta(before, after, name, only)

    # Requests by status, exactly once.
    assert grown("aigateway_requests_total") == {(backend, model, expect.status): 1.0}
    # Tokens by type: what the backend reported, whatever the status.
    tokens = {k[2]: v for k, v in grown("aigateway_model_tokens_total").items()}
    assert tokens == {k: float(v) for k, v in expect.tokens.items()}
    # Latency observations.
    assert grown("aigateway_total_latency_seconds_count") == {(backend, model, expect.status): 1.0}
    assert sum(grown("aigateway_first_token_latency_seconds_count").values()) == expect.first_token
    assert sum(grown("aigateway_inter_token_latency_seconds_count").values()) == expect.inter_token

    # What the client saw.
    if expect.client == "complete":
        assert (seen.done, seen.words, seen.error_event) == (True, OUTPUT_TOKENS, False)
    elif expect.client == "error-event":
        assert seen.error_event and not seen.done
    elif expect.client == "broken":
        assert seen.broken and not seen.done

    # The access log: backend, model, tokens whenever the metrics have them, both paths.
    line = access_log(stack, request_id)
    assert line is not None
    assert (line["backend"], line["model"], line["api"]) == (backend, model, api)
    assert line["path"] == path
    assert line["upstream_path"] == row.upstream_path
    logged_tokens = {
        "prompt": line["input_tokens"],
        "completion": line["output_tokens"],
        "total": line["total_tokens"],
    }
    assert {k: v for k, v in logged_tokens.items() if v} == expect.tokens
    if expect.error is not None:
        assert line["error"] == expect.error
    return Case(expect, backend, model, before, after, line)


@pytest.mark.parametrize("ending_name", list(ENDINGS))
@pytest.mark.parametrize("row", ROWS, ids=[f"{r.schema}:{r.model}" for r in ROWS])
def test_accounting(mstack: Stack, row: Row, ending_name: str) -> None:
    ending = ENDINGS[ending_name]
    case = run_case(
        mstack,
        row,
        ending,
        lambda request_id, counted: send(mstack, row, ending, request_id, counted),
        "/v1/chat/completions",
        "chat_completions",
    )
    expect, line = case.expect, case.line
    # The GenAI families, from the same request under the same rules.
    genai = genai_grown(case.before, case.after, case.model)
    duration = genai("gen_ai_server_request_duration_seconds_count")
    assert list(duration.values()) == [1.0]
    assert ("error_type" in dict(next(iter(duration)))) is (expect.status == "error")
    usage = genai("gen_ai_client_token_usage_sum")
    by_type = {dict(k)["gen_ai_token_type"]: v for k, v in usage.items()}
    expected_usage = {
        "input": expect.tokens.get("prompt"),
        "output": expect.tokens.get("completion"),
    }
    assert by_type == {k: float(v) for k, v in expected_usage.items() if v}
    ttft = genai("gen_ai_server_time_to_first_token_seconds_count")
    assert sum(ttft.values()) == expect.first_token
    tpot = genai("gen_ai_server_time_per_output_token_seconds_count")
    assert sum(tpot.values()) == expect.inter_token

    # Timings, when the response completed (a request recorded at the end of its ext_proc
    # stream has no answer left to carry them).
    completed = expect.client in ("complete", "error-event")
    assert isinstance(line["total_latency_ms"], int | float) is completed
    assert isinstance(line["first_token_latency_ms"], int | float) is completed
    assert isinstance(line["inter_token_latency_ms"], int | float) is (
        completed and expect.inter_token == 1
    )


def test_the_matrix_covers_every_schema_and_ending() -> None:
    config = matrix_config(1)
    schemas = {b["schema"] for b in config["backends"]}
    assert {row.schema for row in ROWS} == schemas
    assert len(ENDINGS) == 8
    assert re.search("hangs up right after the terminal", " ".join(ENDINGS))
    for api in APIS:
        assert [r.row for r in API_ROWS if r.api is api] == ROWS


@pytest.mark.parametrize("client", ["complete", "late end", "leave"])
def test_a_usage_growing_on_every_chunk_reaches_the_access_log(mstack: Stack, client: str) -> None:
    # Google's Gemini API reports the usage so far on every response: the processor
    # publishes only the counts that grew (docs/architecture.md, "Request lifecycle"),
    # and what Envoy merged is what the metrics recorded, also for a client that leaves.
    request_id = str(uuid.uuid4())
    only = ("mock-gemini", "gemini-flash")
    headers = {
        "x-request-id": request_id,
        "x-mock-output-tokens": str(OUTPUT_TOKENS),
        "x-mock-usage-so-far": "1",
        # Leaving: a word a second, so that the processor has answered every chunk Envoy
        # gave it when the client's close arrives.
        **({"x-mock-itl-ms": "1000"} if client == "leave" else {}),
        # The end of body 300 ms after the terminal event, as real upstreams may.
        **({"x-mock-tail-ms": "300"} if client == "late end" else {}),
        **REAL_WORLD,
    }
    body = {"model": only[1], "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    before = snapshot(mstack.metrics_text())
    words = 0
    url = f"{mstack.base_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices") or []:
                    words += len((choice["delta"].get("content") or "").split())
            if client == "leave" and words == 3:
                break  # the connection closes with the body unread
    wait_until("its ext_proc stream to end", lambda: stream_ended(mstack, request_id), 30)
    wait_until("its access log line", lambda: access_log(mstack, request_id) is not None, 30)
    after = snapshot(mstack.metrics_text())
    status = "error" if client == "leave" else "success"
    assert delta(before, after, "aigateway_requests_total", only) == {(*only, status): 1.0}
    tokens = {
        k[2]: v for k, v in delta(before, after, "aigateway_model_tokens_total", only).items()
    }
    line = access_log(mstack, request_id)
    assert line is not None
    assert (line["backend"], line["model"], line["stream"]) == (*only, True)
    logged = {
        "prompt": line["input_tokens"],
        "completion": line["output_tokens"],
        "total": line["total_tokens"],
    }
    assert logged == tokens
    if client != "leave":
        assert tokens == FULL
    else:  # at least the words the client read, more than the first chunk's one
        assert tokens["prompt"] == PROMPT_TOKENS
        assert 3 <= tokens["completion"] < OUTPUT_TOKENS
        assert tokens["total"] == PROMPT_TOKENS + tokens["completion"]


# -- labels and what is not counted ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "backend", "path", "status"),
    [
        # A parameter the backend cannot express, for a configured model.
        ({"model": "claude-sonnet", "n": 2}, "mock-anthropic", "/v1/chat/completions", 400),
        # Messages that fail validation, for a configured model.
        ({"model": "bedrock-claude", "messages": []}, "mock-bedrock", "/v1/chat/completions", 400),
        # An endpoint the backend's schema lacks.
        ({"model": "claude-sonnet", "input": "hi"}, "mock-anthropic", "/v1/embeddings", 400),
        # A remote image URL, which Bedrock cannot fetch.
        (
            {
                "model": "bedrock-claude",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}
                        ],
                    }
                ],
            },
            "mock-bedrock",
            "/v1/chat/completions",
            400,
        ),
    ],
)
def test_a_refusal_after_routing_is_the_models_in_metrics_and_access_log(
    mstack: Stack, body: dict[str, Any], backend: str, path: str, status: int
) -> None:
    body = {"messages": [{"role": "user", "content": PROMPT}], **body}
    model = body["model"]
    request_id = str(uuid.uuid4())
    before = snapshot(mstack.metrics_text())
    response = httpx.post(
        f"{mstack.base_url}{path}", json=body, headers={"x-request-id": request_id}, timeout=30
    )
    assert response.status_code == status
    assert response.json()["error"]["message"]
    wait_until("its ext_proc stream to end", lambda: stream_ended(mstack, request_id), 30)
    wait_until("its access log line", lambda: access_log(mstack, request_id) is not None, 30)
    grown = delta(before, snapshot(mstack.metrics_text()), "aigateway_requests_total")
    assert grown == {(backend, model, "error"): 1.0}
    line = access_log(mstack, request_id)
    assert line is not None
    assert (line["backend"], line["model"], line["status"]) == (backend, model, status)
    assert line["error"]


def test_client_sent_routing_headers_never_become_labels(mstack: Stack) -> None:
    request_id = str(uuid.uuid4())
    before = snapshot(mstack.metrics_text())
    response = httpx.post(
        f"{mstack.base_url}/v1/chat/completions",
        content=b"{not json",
        headers={
            "content-type": "application/json",
            "x-request-id": request_id,
            "x-ai-gateway-model": "gpt-4o-mini",
            "x-ai-gateway-backend": "mock-openai",
        },
        timeout=30,
    )
    assert response.status_code == 400
    wait_until("its ext_proc stream to end", lambda: stream_ended(mstack, request_id), 30)
    grown = delta(before, snapshot(mstack.metrics_text()), "aigateway_requests_total")
    assert grown == {("unknown", "unknown", "error"): 1.0}


def test_the_models_list_is_not_counted(mstack: Stack) -> None:
    request_id = str(uuid.uuid4())
    before = snapshot(mstack.metrics_text())
    response = httpx.get(
        f"{mstack.base_url}/v1/models", headers={"x-request-id": request_id}, timeout=30
    )
    assert response.status_code == 200
    assert "gpt-4o-mini" in {m["id"] for m in response.json()["data"]}
    wait_until("its ext_proc stream to end", lambda: stream_ended(mstack, request_id), 30)
    after = snapshot(mstack.metrics_text())
    assert delta(before, after, "aigateway_requests_total") == {}
    assert delta(before, after, "aigateway_total_latency_seconds_count") == {}


# -- the other client APIs -------------------------------------------------------------
#
# The same schemas and endings for the Responses and Messages APIs: the upstream behaves
# the same way, and what ends the response for the client is its own API's terminal event.


@dataclass(frozen=True)
class ClientApi:
    name: str  # the access log's `api`
    path: str
    #: Event types that end the response (done), and those that report an error.
    terminal: frozenset[str]
    errors: frozenset[str]

    def body(self, model: str) -> dict[str, Any]:
        if self.name == "responses":
            return {"model": model, "input": PROMPT, "stream": True}
        return {
            "model": model,
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        }

    def words(self, doc: dict[str, Any]) -> int:
        if doc.get("type") == "response.output_text.delta":
            return len(doc["delta"].split())
        delta = doc.get("delta")
        if doc.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            return len(delta["text"].split())
        return 0


RESPONSES = ClientApi(
    "responses",
    "/v1/responses",
    frozenset({"response.completed", "response.incomplete"}),
    frozenset({"response.failed", "error"}),
)
MESSAGES = ClientApi("messages", "/v1/messages", frozenset({"message_stop"}), frozenset({"error"}))
APIS = (RESPONSES, MESSAGES)


@dataclass(frozen=True)
class ApiRow:
    api: ClientApi
    row: Row
    upstream_path: str
    truncated_usage: dict[str, int]


def api_rows() -> list[ApiRow]:
    out = []
    for api in APIS:
        for row in ROWS:
            path, truncated = row.upstream_path, row.truncated_usage
            if api is RESPONSES and row.schema in ("openai", "azure-openai"):
                # Passed through: the usage comes in response.completed, which a
                # truncated stream lacks.
                path = "/v1/responses" if row.schema == "openai" else "/openai/v1/responses"
                truncated = NONE
            out.append(ApiRow(api, row, path, truncated))
    return out


API_ROWS = api_rows()


def read_api_events(
    api: ClientApi, lines: Iterator[str], seen: Seen, *, until_terminal: bool
) -> None:
    for line in lines:
        if not line.startswith("data: "):
            continue
        doc = json.loads(line[6:])
        kind = doc.get("type")
        if kind in api.errors:
            seen.error_event = True
        seen.words += api.words(doc)
        if kind in api.terminal:
            seen.done = True
            if until_terminal:
                return


def sdk_stream(
    stack: Stack, api: ClientApi, model: str, headers: dict[str, str], seen: Seen
) -> None:
    """The official client, closing its stream as soon as it has the terminal event."""
    if api is RESPONSES:
        client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key="k", max_retries=0)
        with client.responses.create(
            model=model, input=PROMPT, stream=True, extra_headers=headers
        ) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    seen.words += len(event.delta.split())
                if event.type in api.terminal:
                    seen.done = True
                    break
        return
    claude = anthropic.Anthropic(base_url=stack.base_url, api_key="k", max_retries=0)
    with claude.messages.stream(
        model=model,
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers=headers,
    ) as messages:
        for item in messages:
            if item.type == "text":
                seen.words += len(item.text.split())
            if item.type in api.terminal:
                seen.done = True
                break


def send_api(
    stack: Stack, api_row: ApiRow, ending: Ending, request_id: str, counted: Callable[[], None]
) -> Seen:
    api, row = api_row.api, api_row.row
    model = row.model + ("-t" if ending.timeout_backend else "")
    headers = {
        "x-request-id": request_id,
        "x-mock-output-tokens": str(OUTPUT_TOKENS),
        **REAL_WORLD,
        **{k: (request_id if v == "KEY" else v) for k, v in ending.headers.items()},
    }
    seen = Seen()
    if ending.client == "sdk":
        sdk_stream(stack, api, model, headers, seen)
        counted()  # while the upstream still holds the end of its body
        release(stack, request_id)
        return seen
    with httpx.Client(timeout=httpx.Timeout(30)) as http:
        try:
            with http.stream(
                "POST", stack.base_url + api.path, json=api.body(model), headers=headers
            ) as response:
                assert response.status_code == 200, response.read()
                lines = response.iter_lines()
                if ending.client == "leave":
                    for line in lines:
                        if line.startswith("data: ") and api.words(json.loads(line[6:])):
                            return seen  # the connection closes with the body unread
                    raise AssertionError("the stream ended before its first word")
                if ending.client == "until-terminal":
                    read_api_events(api, lines, seen, until_terminal=True)
                    assert seen.done
                    counted()  # before the upstream has ended its body
                    release(stack, request_id)
                read_api_events(api, lines, seen, until_terminal=False)
        except (httpx.RemoteProtocolError, httpx.ReadError):
            seen.broken = True
    return seen


@pytest.mark.parametrize("ending_name", list(ENDINGS))
@pytest.mark.parametrize(
    "api_row", API_ROWS, ids=[f"{r.api.name}-{r.row.schema}:{r.row.model}" for r in API_ROWS]
)
def test_client_api_accounting(mstack: Stack, api_row: ApiRow, ending_name: str) -> None:
    ending = ENDINGS[ending_name]
    row = Row(
        api_row.row.schema,
        api_row.row.model,
        api_row.row.backend,
        api_row.upstream_path,
        api_row.row.first_usage,
        api_row.truncated_usage,
    )
    run_case(
        mstack,
        row,
        ending,
        lambda request_id, counted: send_api(mstack, api_row, ending, request_id, counted),
        api_row.api.path,
        api_row.api.name,
    )
