"""Hostile and odd requests through the real Envoy, most as bytes on a socket (what no
HTTP client library would send), each with its status, the client API's error shape, the
exact count in ``aigateway_requests_total`` and no traceback in the processor's log
(docs/reliability.md, "Hostile and odd requests"). What each category did before:

- no Host, a fragment in the path, a WebSocket upgrade: a 500, a traceback and no count
  (the processor got Envoy's reply before any request); now Envoy's 400/403, counted;
- HTTP/1.0: a connection closed with no answer; now served;
- ``//v1/messages``, ``/v1/./chat/completions``, ``/v1/x/../responses``: 404s
  (``//v1/messages`` in OpenAI's shape); now served;
- HTTP Envoy cannot parse (a lower-case method, a space before a header's colon, a NUL
  in a value, 150 headers, a 100 kB header, both content-length and chunked): a
  connection closed with no answer; now Envoy's 400/431 in OpenAI's shape, not counted
  (no processor sees it);
- a 20 kB query string: copied into the header the backend got the client's path in, so
  an upstream refused the request; now that header never holds the query string;
- nesting just inside the parser's depth limit, where the gateway writes the body again
  (or echoes it, as the Responses stream does): a 500 or a stream cut short, and a
  traceback (too deep to write from further down the stack); now served;
- a UTF-8 byte order mark: a 400 saying "Expecting value"; now one that says what it is.

Not here, for want of an HTTP/2 client: a 404/405/415 to a request with a body reached an
HTTP/2 client mid-upload as a reset stream; now it waits for the body
(tests/extproc/framework/test_server.py).
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.e2e.stack import Stack, wait_until

CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
MESSAGES = (
    b'{"model": "claude-sonnet", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'
)
RESPONSES = b'{"model": "gpt-4o-mini", "input": "hi"}'


def request(
    target: str, body: bytes, *, version: str = "HTTP/1.1", host: bool = True, extra: str = ""
) -> bytes:
    head = f"POST {target} {version}\r\n" + ("host: gateway\r\n" if host else "")
    head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


MANY_HEADERS = "".join(f"x-h{i}: v\r\n" for i in range(150))

# (what, raw request, status, shape of the answer: "openai", "anthropic" or "served",
# and whether a processor counts it)
CASES = [
    (
        "lower-case method",
        request("/v1/chat/completions", CHAT).replace(b"POST", b"post", 1),
        400,
        "openai",
        False,
    ),
    (
        "space before colon",
        request("/v1/chat/completions", CHAT, extra="x-odd : a\r\n"),
        400,
        "openai",
        False,
    ),
    (
        "nul in a value",
        request("/v1/messages", MESSAGES, extra="x-odd: a\0b\r\n"),
        400,
        "openai",
        False,
    ),
    (
        "150 headers",
        request("/v1/chat/completions", CHAT, extra=MANY_HEADERS),
        431,
        "openai",
        False,
    ),
    (
        "100 kB header",
        request("/v1/responses", RESPONSES, extra=f"x-big: {'v' * 100_000}\r\n"),
        431,
        "openai",
        False,
    ),
    (
        "content-length and chunked",
        request("/v1/chat/completions", CHAT, extra="transfer-encoding: chunked\r\n"),
        400,
        "openai",
        False,
    ),
    ("no host", request("/v1/chat/completions", CHAT, host=False), 400, "openai", True),
    ("no host, messages", request("/v1/messages", MESSAGES, host=False), 400, "anthropic", True),
    ("fragment", request("/v1/chat/completions#frag", CHAT), 400, "openai", True),
    ("fragment, messages", request("/v1/messages#frag", MESSAGES), 400, "anthropic", True),
    (
        "websocket upgrade",
        request("/v1/responses", RESPONSES, extra="upgrade: websocket\r\nconnection: upgrade\r\n"),
        403,
        "openai",
        True,
    ),
    ("http/1.0", request("/v1/chat/completions", CHAT, version="HTTP/1.0"), 200, "served", True),
    (
        "http/1.0, no host",
        request("/v1/messages", MESSAGES, version="HTTP/1.0", host=False),
        200,
        "served",
        True,
    ),
    (
        "20 kB query string",
        request("/v1/chat/completions?" + "q" * 20_000, CHAT),
        200,
        "served",
        True,
    ),
    ("double slash", request("//v1/messages", MESSAGES), 200, "served", True),
    ("dot segment", request("/v1/./chat/completions", CHAT), 200, "served", True),
    ("dot-dot segment", request("/v1/x/../responses", RESPONSES), 200, "served", True),
]


def exchange(stack: Stack, raw: bytes) -> tuple[int, bytes]:
    """Sends ``raw`` on a connection of its own and reads the whole answer."""
    with socket.create_connection(("127.0.0.1", stack.listen_port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            head, sep, body = data.partition(b"\r\n\r\n")
            length = [
                int(v)
                for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                if k.strip().lower() == b"content-length"
            ]
            if sep and length and len(body) >= length[0]:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "the connection closed with no answer"
    return int(head.split()[1]), body


def requests_total(stack: Stack) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in stack.metrics_text().splitlines()
        if line.startswith("aigateway_requests_total{")
    )


@pytest.mark.parametrize(
    ("what", "raw", "status", "shape", "counted"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_and_odd_requests(
    rstack: Stack, what: str, raw: bytes, status: int, shape: str, counted: bool
) -> None:
    before = requests_total(rstack)
    tracebacks = rstack.procs["serve"].output().count("Traceback")
    got, body = exchange(rstack, raw)
    assert got == status, body
    doc = json.loads(body)
    if shape == "anthropic":
        assert doc["type"] == "error" and isinstance(doc["error"]["message"], str)
    elif shape == "openai":
        assert isinstance(doc["error"]["message"], str) and isinstance(doc["error"]["type"], str)
    if counted:
        wait_until("the request to be counted", lambda: requests_total(rstack) >= before + 1, 5)
    assert requests_total(rstack) == before + counted
    assert rstack.procs["serve"].output().count("Traceback") == tracebacks


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES), ("/v1/responses", RESPONSES)],
)
def test_a_byte_order_mark_is_a_400_that_says_so(rstack: Stack, path: str, body: bytes) -> None:
    before = requests_total(rstack)
    got, answer = exchange(rstack, request(path, b"\xef\xbb\xbf" + body))
    assert got == 400
    assert "byte order mark" in json.loads(answer)["error"]["message"]
    wait_until("the request to be counted", lambda: requests_total(rstack) >= before + 1, 5)
    assert requests_total(rstack) == before + 1


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


# Where the gateway writes the body again (a model renamed for its backend, a
# translation), with NESTED where the deep value goes.
USER_HI = '"messages": [{"role": "user", "content": "hi"}]'
DEEP_BODIES = [
    ("/v1/chat/completions", '{"model": "phi4", ' + USER_HI + ', "metadata": NESTED}'),
    (
        "/v1/responses",
        '{"model": "bedrock-claude", "input": "hi",'
        ' "tools": [{"type": "function", "name": "f", "parameters": NESTED}]}',
    ),
    (
        "/v1/messages",
        '{"model": "gemini-flash", "max_tokens": 5, ' + USER_HI + ","
        ' "tools": [{"name": "f", "input_schema": NESTED}]}',
    ),
    # The Responses stream's first event echoes the request's tools.
    (
        "/v1/responses",
        '{"model": "claude-sonnet", "stream": true, "input": "hi",'
        ' "tools": [{"type": "function", "name": "f", "parameters": NESTED}]}',
    ),
]


@pytest.mark.parametrize(
    ("path", "template"), DEEP_BODIES, ids=["chat", "responses", "messages", "responses-stream"]
)
def test_nesting_at_the_parser_s_limit_is_served_or_a_400(
    rstack: Stack, path: str, template: str
) -> None:
    """Depths around the parser's limit (where one more level is a 400): a body parsed
    just inside it was too deep to write again further down the stack, a 500 (or a
    stream cut short) with a traceback."""
    tracebacks = rstack.procs["serve"].output().count("Traceback")
    before = requests_total(rstack)
    statuses = set()
    with httpx.Client(base_url=rstack.base_url, timeout=30) as client:
        for depth in range(950, 1000):
            body = template.replace("NESTED", nested(depth)).encode()
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            statuses.add(response.status_code)
            if response.status_code == 200 and b'"stream": true' in body:
                assert b"event: response.completed" in response.content
            elif response.status_code != 200:
                assert response.status_code == 400, response.text
                assert "nested too deeply" in response.json()["error"]["message"]
    assert statuses == {200, 400}  # both sides of the limit were reached
    wait_until("the requests to be counted", lambda: requests_total(rstack) >= before + 50, 5)
    assert requests_total(rstack) == before + 50
    assert rstack.procs["serve"].output().count("Traceback") == tracebacks
