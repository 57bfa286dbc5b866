"""Bad input through the real Envoy: whatever a client sends that is not a valid
request gets a 4xx OpenAI error JSON from us, never a 5xx or a crash, and the
processor's memory stays flat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.stack import Stack

MODEL = "gpt-4o-mini"
GOOD_MESSAGES = [{"role": "user", "content": "hello"}]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bad_models = st.one_of(
    json_scalars.filter(lambda v: not isinstance(v, str) or v != MODEL),
    st.just(""),
    st.text(min_size=1, max_size=50).map(lambda t: "unknown-" + t),
    st.just("x" * 200_000),
    st.lists(json_scalars, max_size=3),
)
bad_messages = st.one_of(
    json_scalars,
    st.just([]),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
    st.lists(json_scalars, min_size=1, max_size=3),
    st.lists(st.fixed_dictionaries({"role": st.integers() | st.none()}), min_size=1, max_size=2),
    st.lists(
        st.fixed_dictionaries(
            {
                "role": st.just("user"),
                "content": st.integers()
                | st.booleans()
                | st.dictionaries(st.text(max_size=3), json_scalars, max_size=2),
            }
        ),
        min_size=1,
        max_size=2,
    ),
    st.lists(
        st.fixed_dictionaries(
            {"role": st.just("user"), "content": st.lists(json_scalars, min_size=1, max_size=3)}
        ),
        min_size=1,
        max_size=2,
    ),
)


@st.composite
def invalid_objects(draw: st.DrawFn) -> bytes:
    """A JSON object that breaks the request contract in at least one way."""
    doc: dict[str, Any] = {}
    flaw = draw(
        st.sampled_from(
            ["model", "messages", "both", "missing-model", "missing-messages", "stream"]
        )
    )
    doc["model"] = draw(bad_models) if flaw in ("model", "both") else MODEL
    doc["messages"] = draw(bad_messages) if flaw in ("messages", "both") else GOOD_MESSAGES
    if flaw == "missing-model":
        del doc["model"]
    if flaw == "missing-messages":
        del doc["messages"]
    if flaw == "stream":
        doc["stream"] = draw(
            st.one_of(st.integers(), st.text(max_size=5), st.lists(st.none(), max_size=2))
        )
    extra = draw(
        st.dictionaries(
            st.text(min_size=1, max_size=8).filter(lambda k: k not in doc), json_values, max_size=3
        )
    )
    return json.dumps({**extra, **doc}).encode()


def nested(depth: int) -> bytes:
    return b'{"model":"gpt-4o-mini","messages":' + b"[" * depth + b"]" * depth + b"}"


def not_an_object(body: bytes) -> bool:
    """Raw bytes may happen to spell a valid request; objects are invalid_objects' job."""
    try:
        return not isinstance(json.loads(body), dict)
    except (ValueError, RecursionError):
        return True


bodies = st.one_of(
    st.binary(max_size=300).filter(not_an_object),  # mostly invalid JSON or UTF-8
    st.text(max_size=200).map(str.encode).filter(not_an_object),
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    invalid_objects(),
    st.integers(min_value=1000, max_value=200_000).map(nested),
    st.binary(min_size=1, max_size=50).map(
        lambda b: b'{"model": "gpt-4o-mini", "messages": "' + b + b'"}'
    ),
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/json; charset=latin-1",
    ]
)
header_names = st.from_regex(r"\Ax-[a-z0-9-]{1,20}\Z", fullmatch=True)
header_values = st.from_regex(r"\A[ -~]{0,40}\Z", fullmatch=True).map(str.strip)


@pytest.fixture(scope="module")
def http(rstack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rstack.base_url, timeout=30) as client:
        yield client


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def assert_our_4xx(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert isinstance(error["type"], str)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    body=bodies,
    content_type=content_types,
    extra=st.dictionaries(header_names, header_values, max_size=4),
)
def test_bad_bodies_get_a_4xx_openai_error(
    http: httpx.Client, body: bytes, content_type: str, extra: dict[str, str]
) -> None:
    headers = {**extra, "content-type": content_type}
    headers.pop("x-fault-phase", None)  # the one header our test wrapper acts on
    assert_our_4xx(http.post("/v1/chat/completions", content=body, headers=headers))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from(
        [
            "/v1/chat/completions",
            "/v1/embeddings",
            "/v1/completions",
            "/",
            "/v2/x",
            "/v1/chat/completions/",
        ]
    ),
)
def test_wrong_methods_and_paths(http: httpx.Client, method: str, path: str) -> None:
    assert_our_4xx(http.request(method, path, content=b"{}"))


@pytest.mark.parametrize(
    "headers",
    [
        {"content-encoding": "gzip"},
        {"content-encoding": "br"},
        {"x-ai-gateway-model": "spoofed", "x-ai-gateway-backend": "mock-openai"},
    ],
)
def test_odd_headers(http: httpx.Client, headers: dict[str, str]) -> None:
    assert_our_4xx(http.post("/v1/chat/completions", content=b"{nope", headers=headers))


def test_embeddings_bad_input(http: httpx.Client) -> None:
    for body in (
        {"model": "text-embedding-3-small"},
        {"model": "text-embedding-3-small", "input": 5},
        {"input": "x"},
    ):
        assert_our_4xx(http.post("/v1/embeddings", json=body))


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_oversized_body_is_413_in_the_client_apis_shape(
    rstack: Stack, http: httpx.Client, path: str
) -> None:
    import yaml

    limit = yaml.safe_load(rstack.config_path.read_text()).get(
        "max_request_bytes", 32 * 1024 * 1024
    )
    body = (
        b'{"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": "'
        + b"a " * (limit // 2 + 10)
        + b'"}]}'
    )
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert isinstance(doc["error"]["message"], str)
    if path == "/v1/messages":  # Envoy's own reply, in Anthropic's shape there
        assert doc["type"] == "error"
        assert doc["error"]["type"] == "invalid_request_error"
    else:
        assert doc["error"]["type"] == "invalid_request_error"
        assert doc["error"]["code"] == 413
    # And the gateway serves the next request.
    ok = http.post("/v1/chat/completions", json={"model": MODEL, "messages": GOOD_MESSAGES})
    assert ok.status_code == 200


# Each endpoint, a model it routes, and the request around a number field.
STRICT_JSON_ENDPOINTS = [
    ("/v1/chat/completions", '{"model": "bedrock-claude", "temperature": %s, "messages": []}'),
    ("/v1/responses", '{"model": "gpt-4o-mini", "temperature": %s, "input": "hi"}'),
    ("/v1/embeddings", '{"model": "text-embedding-3-small", "dimensions": %s, "input": "hi"}'),
    ("/v1/messages", '{"model": "claude-sonnet", "max_tokens": 5, "top_p": %s, "messages": []}'),
    ("/v1/messages/count_tokens", '{"model": "claude-sonnet", "x": [1, {"y": %s}]}'),
]


@pytest.mark.parametrize(
    "number",
    ["NaN", "Infinity", "-Infinity", "1e309", "-1.5E+400", "1" + "0" * 309, "-" + "9" * 400],
)
@pytest.mark.parametrize(("path", "template"), STRICT_JSON_ENDPOINTS)
def test_numbers_json_does_not_have_are_a_400_in_the_client_apis_shape(
    rstack: Stack, http: httpx.Client, path: str, template: str, number: str
) -> None:
    rstack.clear_mock_requests()
    response = http.post(
        path, content=(template % number).encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    doc = response.json()
    if path.startswith("/v1/messages"):
        assert doc["type"] == "error"
        assert doc["error"]["type"] == "invalid_request_error"
    else:
        assert doc["error"]["type"] == "invalid_request_error"
    assert number.lstrip("-") in doc["error"]["message"] or "too large" in doc["error"]["message"]
    assert rstack.mock_requests() == []  # nothing went upstream


def test_memory_stays_flat_over_many_bad_requests(rstack: Stack, http: httpx.Client) -> None:
    pid = rstack.procs["serve"].popen.pid
    samples = [
        b"{bad",
        nested(50_000),
        b'{"model": 1}',
        json.dumps({"model": "x" * 100_000, "messages": GOOD_MESSAGES}).encode(),
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": 5}]}).encode(),
    ]

    def burst(n: int) -> None:
        for i in range(n):
            assert_our_4xx(http.post("/v1/chat/completions", content=samples[i % len(samples)]))

    burst(500)  # warm up: caches, allocator arenas
    before = rss_kib(pid)
    burst(3000)
    growth = rss_kib(pid) - before
    assert growth < 20 * 1024, f"RSS grew by {growth} KiB over 3000 bad requests"
