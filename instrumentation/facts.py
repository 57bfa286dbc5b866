"""The facts a request publishes: the one typed contract between the processor that
learns them, the wrapper that records them and Envoy's access log that prints them
(``docs/architecture.md``, "Request lifecycle").

A processor publishes them as dynamic metadata under :data:`METADATA_NAMESPACE`, as soon
as it learns each one; Envoy merges what every message carries. :class:`Facts` is a
``TypedDict``: a plain dict at run time (nothing to pay on the request path), and a key
spelled wrong is a mypy error. A new fact is a new key here; the access log picks it up.

This module imports nothing, so the gateway may use it without depending on telemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypedDict, cast, get_args

#: The dynamic metadata namespace the facts are published under (Envoy's access log,
#: rate limits and the metrics wrapper read it).
METADATA_NAMESPACE: Final = "aigateway"


class Facts(TypedDict, total=False):
    """What one request published so far; every key is optional."""

    #: The configured backend and model that serve the request, from routing on.
    backend: str
    model: str
    #: The GenAI operation (``chat``, ``embeddings``, ``count_tokens``...).
    operation: str
    #: The client API (``chat_completions``, ``embeddings``, ``responses``, ``messages``).
    api: str
    #: ``True``: the client asked for a streamed response (absent when it did not).
    stream: bool
    #: Token counts as the backend reported them.
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    reasoning_tokens: int
    #: The model the backend says answered, and why each choice ended.
    response_model: str
    finish_reasons: list[str]
    #: Why the request failed (``upstream_http_429``, ``model_not_found``...).
    error: str
    #: The ``limits`` rule that refused the request (docs/limits.md).
    rate_limited: str
    #: ``allow`` or ``deny``: decided without the limits store, which was unreachable.
    rate_limit_store_error: str
    #: The metrics wrapper's timings, in milliseconds, on the answer that completes the
    #: response (none for a request that never completed).
    first_token_latency_ms: float
    inter_token_latency_ms: float
    total_latency_ms: float


#: A fact's key, for tables of keys that mypy checks (``tests/instrumentation``
#: checks it lists every key of :class:`Facts`).
FactKey = Literal[
    "backend",
    "model",
    "operation",
    "api",
    "stream",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
    "response_model",
    "finish_reasons",
    "error",
    "rate_limited",
    "rate_limit_store_error",
    "first_token_latency_ms",
    "inter_token_latency_ms",
    "total_latency_ms",
]
#: A token count's key.
TokenFact = Literal[
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
]

#: Every fact's key, in the order Envoy's access log shows them.
FACT_KEYS: Final[tuple[str, ...]] = tuple(Facts.__annotations__)


def published(facts: Facts) -> dict[str, Mapping[str, Any]]:
    """``facts`` as a result's ``dynamic_metadata``."""
    return {METADATA_NAMESPACE: facts}


def facts_in(metadata: Mapping[str, Mapping[str, Any]] | None) -> Facts | None:
    """The facts a result's ``dynamic_metadata`` carries, if any (values unchecked: a
    processor of someone else's may publish anything)."""
    if not metadata:
        return None
    return cast("Facts | None", metadata.get(METADATA_NAMESPACE))


#: How one attempt to one backend ended (``aigateway_backend_attempts_total``'s
#: ``result``): ``rate_limited`` is a 429, ``client_error`` another 4xx, ``server_error``
#: a 5xx.
AttemptResult = Literal[
    "success",
    "rate_limited",
    "client_error",
    "server_error",
    "timeout",
    "connect_failure",
    "reset",
]
ATTEMPT_RESULTS: Final[frozenset[str]] = frozenset(get_args(AttemptResult))


@dataclass(slots=True, frozen=True)
class Attempt:
    """One attempt of a request to a model with several backends, as Envoy logged it
    (``docs/architecture.md``, "Routing over several backends")."""

    backend: str
    model: str
    result: AttemptResult
    #: The backend's HTTP status, 0 when it sent none.
    status: int
    #: The request headers the header labels read (``metrics.labels_from_headers``).
    headers: tuple[tuple[str, str], ...] = ()


#: ``error.type`` of a request no processor recorded: it never reached one (Envoy could
#: not open its stream), or the processor holding it was lost (its connection ended).
UnrecordedCause = Literal["processor_unavailable", "processor_lost"]
#: The fact only the answer that completes a request carries (the metrics wrapper adds it
#: when it records): Envoy's log of unrecorded requests fires only without it.
RECORDED_FACT: Final = "total_latency_ms"


@dataclass(slots=True, frozen=True)
class UnrecordedRequest:
    """A request Envoy answered itself and no processor recorded, as Envoy logged it
    (``docs/architecture.md``, "Requests no processor recorded")."""

    #: What its processor had published before it was lost (backend, model, tokens).
    facts: Facts
    #: The request headers the header labels read (``metrics.labels_from_headers``).
    headers: tuple[tuple[str, str], ...]
    #: Seconds from the request's first byte to the end of Envoy's answer.
    duration: float
    cause: UnrecordedCause
