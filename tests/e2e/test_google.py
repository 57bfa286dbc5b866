"""Google backends end to end through real Envoy, beyond what every schema shares
(tests/e2e/test_schemas.py): Gemini embeddings, thoughts and cache reads in usage and
metrics, Vertex AI's OAuth2 tokens (cached, refreshed before they expire, refused or
unavailable credentials as clean 401/502 errors, counted), and an https backend with a
path prefix and a query string."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import trustme

from aigateway.mock_backend.vectors import embedding_vector
from tests.e2e.stack import GEMINI_KEY, Stack, running, wait_until
from tests.e2e.test_chat_openai import MESSAGES, PROMPT_WORDS
from tests.e2e.test_metrics import after_requests, delta, snapshot


def grants(stack: Stack) -> list[dict[str, Any]]:
    return [r for r in stack.mock_requests() if r["path"].startswith("/token")]


def bearer_tokens(stack: Stack, publisher: str) -> list[str]:
    return [
        r["headers"]["authorization"].removeprefix("Bearer ")
        for r in stack.mock_requests()
        if f"/publishers/{publisher}/" in r["path"]
    ]


# --- Gemini API ----------------------------------------------------------------------


def test_embeddings_go_through_batch_embed_contents(stack: Stack, client: openai.OpenAI) -> None:
    key = ("mock-gemini", "gemini-embedding")
    before = snapshot(stack.metrics_text())
    # The openai client asks for base64 by default and decodes it.
    result = client.embeddings.create(
        model="gemini-embedding", input=["hello world", "hello world", "bye"], dimensions=8
    )
    floats = client.embeddings.create(
        model="gemini-embedding", input="bye", dimensions=8, encoding_format="float"
    )
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [8, 8, 8]
    expected = [pytest.approx(list(embedding_vector(t, 8))) for t in ("hello world", "bye")]
    assert vectors[0] == vectors[1] == expected[0]
    assert vectors[2] == floats.data[0].embedding == expected[1]
    # Gemini reports no token counts for embeddings: 0 for the client, none counted.
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (0, 0)
    after = after_requests(stack, before, key, 2)
    assert delta(before, after, "aigateway_requests_total", key) == {(*key, "success"): 2}
    assert delta(before, after, "aigateway_model_tokens_total", key) == {}


def test_claude_on_vertex_ai_has_no_embeddings_endpoint(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="vertex-claude", input="x")
    assert isinstance(err.value.body, dict) and err.value.body["code"] == "unsupported_endpoint"


@pytest.mark.parametrize("stream", [False, True])
def test_thoughts_and_cache_reads_are_reported_and_counted(
    stack: Stack, client: openai.OpenAI, stream: bool
) -> None:
    key = ("mock-gemini", "gemini-flash")
    knobs = {
        "x-mock-output-tokens": "3",
        "x-mock-reasoning-tokens": "5",
        "x-mock-cached-tokens": "2",
    }
    before = snapshot(stack.metrics_text())
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="gemini-flash",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=knobs,
            )
        )
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(
            model="gemini-flash", messages=MESSAGES, extra_headers=knobs
        ).usage
    assert usage is not None
    # OpenAI counts reasoning in completion tokens; Gemini reports thoughts apart.
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_WORDS, 8)
    assert usage.total_tokens == PROMPT_WORDS + 8
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 2
    after = after_requests(stack, before, key, 1)
    assert delta(before, after, "aigateway_requests_total", key) == {(*key, "success"): 1}
    assert delta(before, after, "aigateway_model_tokens_total", key) == {
        (*key, "prompt"): PROMPT_WORDS,
        (*key, "completion"): 8,
        (*key, "total"): PROMPT_WORDS + 8,
        (*key, "cached_prompt"): 2,
        (*key, "reasoning"): 5,
    }


def test_a_stream_cut_before_its_last_chunk_is_an_error(
    stack: Stack, client: openai.OpenAI
) -> None:
    key = ("mock-gemini", "gemini-flash")
    before = snapshot(stack.metrics_text())
    with pytest.raises(openai.APIError) as err:
        for _ in client.chat.completions.create(
            model="gemini-flash",
            messages=MESSAGES,
            stream=True,
            extra_headers={"x-mock-fault": "truncate", "x-mock-output-tokens": "4"},
        ):
            pass
    assert "before it was complete" in err.value.message
    after = after_requests(stack, before, key, 1)
    assert delta(before, after, "aigateway_requests_total", key) == {(*key, "error"): 1}
    # What the upstream had reported is counted: the prompt (no completion yet).
    tokens = delta(before, after, "aigateway_model_tokens_total", key)
    assert tokens == {(*key, "prompt"): PROMPT_WORDS, (*key, "total"): PROMPT_WORDS}


# --- Vertex AI credentials -----------------------------------------------------------


def test_a_vertex_token_is_fetched_once_and_reused(stack: Stack, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="vertex-gemini", messages=MESSAGES)  # a token exists
    stack.clear_mock_requests()
    for model in ("vertex-gemini", "vertex-claude", "vertex-gemini"):
        client.chat.completions.create(model=model, messages=MESSAGES)
        list(client.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    tokens = bearer_tokens(stack, "google") + bearer_tokens(stack, "anthropic")
    assert len(tokens) == 6 and len(set(tokens)) == 1
    assert grants(stack) == []


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: only these requests move its metrics."""
    with running(Stack(tmp_path_factory.mktemp("token-failures"))) as s:
        yield s


@pytest.mark.parametrize(
    ("model", "status", "error", "message"),
    [
        (
            "vertex-refused",
            401,
            openai.AuthenticationError,
            "The gateway could not get credentials for backend mock-vertex-refused: the token"
            " endpoint refused the credentials (invalid_grant: Invalid JWT Signature.)",
        ),
        (
            "vertex-down",
            502,
            openai.InternalServerError,
            "The gateway could not get credentials for backend mock-vertex-down: the token"
            " endpoint could not be reached",
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_token_failures_are_clean_errors_and_counted(
    auth_stack: Stack,
    model: str,
    status: int,
    error: type[openai.APIStatusError],
    message: str,
    stream: bool,
) -> None:
    client = openai.OpenAI(base_url=f"{auth_stack.base_url}/v1", api_key="k", max_retries=0)
    before = snapshot(auth_stack.metrics_text())
    auth_stack.clear_mock_requests()
    with pytest.raises(error) as err:
        client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
    assert err.value.status_code == status
    assert isinstance(err.value.body, dict)
    assert err.value.body["code"] == "backend_auth_failed"
    assert err.value.body["message"] == message
    assert bearer_tokens(auth_stack, "google") == []  # nothing went to the model
    after: dict[Any, float] = {}

    def counted() -> bool:
        nonlocal after
        after = snapshot(auth_stack.metrics_text())
        return bool(delta(before, after, "aigateway_requests_total"))

    wait_until("the request to be recorded", counted)
    # Counted once, as an error. (Which labels a local reply after routing gets is the
    # accounting rules' business, docs/architecture.md "Accounting rules".)
    (grown,) = delta(before, after, "aigateway_requests_total").items()
    assert grown[0][2] == "error" and grown[1] == 1
    assert delta(before, after, "aigateway_model_tokens_total") == {}


@pytest.fixture(scope="module")
def short_token_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Tokens live 60 s, less than the gateway's refresh margin: every request refreshes."""
    stack = Stack(tmp_path_factory.mktemp("short-tokens"), mock_args=["--gcp-token-lifetime", "60"])
    with running(stack) as s:
        yield s


def test_tokens_are_refreshed_before_they_expire(short_token_stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{short_token_stack.base_url}/v1", api_key="k", max_retries=0)
    for model in ("vertex-gemini", "vertex-claude", "vertex-gemini"):
        reply = client.chat.completions.create(model=model, messages=MESSAGES)
        assert reply.choices[0].finish_reason == "stop"
    tokens = bearer_tokens(short_token_stack, "google") + bearer_tokens(
        short_token_stack, "anthropic"
    )
    assert len(set(tokens)) == 3
    assert len(grants(short_token_stack)) == 3


# --- an https backend with a path prefix and a query string --------------------------


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("tls-backend")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    cert = ca.issue_cert("localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(workdir / "mock.pem"))

    def config(mock_port: int) -> dict[str, Any]:
        return {
            "backends": [
                {
                    "name": "gemini-tls",
                    "schema": "gcp-gemini",
                    "endpoint": f"https://localhost:{mock_port}/google",
                    "auth": {"api_key": {"value": GEMINI_KEY}},
                }
            ],
            "models": [{"name": "gemini-tls", "backend": "gemini-tls"}],
        }

    stack = Stack(
        workdir,
        config_factory=config,
        mock_args=[
            "--tls-cert",
            str(workdir / "mock.pem"),
            "--tls-key",
            str(workdir / "mock.pem"),
            "--path-prefix",
            "/google",
        ],
        envoy_args=["--backend-ca", str(workdir / "ca.pem")],
    )
    with running(stack) as s:
        yield s


@pytest.mark.parametrize("stream", [False, True])
def test_https_backend_with_a_path_prefix_and_a_query(tls_stack: Stack, stream: bool) -> None:
    """The mock speaks only TLS here, serves Gemini only under /google, and streams only
    with ?alt=sse: an answer proves Envoy kept all three."""
    client = openai.OpenAI(base_url=f"{tls_stack.base_url}/v1", api_key="k", max_retries=0)
    if stream:
        chunks = list(
            client.chat.completions.create(model="gemini-tls", messages=MESSAGES, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == "stop"
    else:
        text = (
            client.chat.completions.create(model="gemini-tls", messages=MESSAGES)
            .choices[0]
            .message.content
            or ""
        )
    assert len(text.split()) == 8


def test_the_tls_fixture_really_is_tls(tls_stack: Stack) -> None:
    """Plain HTTP to the mock fails: the answers above came over TLS."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", tls_stack.mock_port, timeout=5)
    try:
        conn.request("GET", "/_mock/requests")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.getresponse().read()
    finally:
        conn.close()
