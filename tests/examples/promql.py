"""What the gateway really exports, and which metrics and labels a PromQL expression
names: so rules and dashboards can be checked against each other.

The exported set is not copied from the docs: it is read from ``/metrics`` text produced
by the real ``InstrumentedProcessor`` and OpenTelemetry Prometheus exporter, driven
in-process through a streamed success and an upstream error, with every token type,
``metrics.schema: both``, a ``tenant`` header label and a price (so every family).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import cache

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from aigateway.extproc.framework.processor import (
    CONTINUE,
    Headers,
    ImmediateResponse,
    Outcome,
    Processor,
    Result,
)
from aigateway.instrumentation.aggregation import InProcessHistograms
from aigateway.instrumentation.facts import METADATA_NAMESPACE, Attempt
from aigateway.instrumentation.instrumented import HeaderLabel, Instrumentation
from aigateway.instrumentation.metrics import (
    METER_NAME,
    Price,
    create_meter_provider,
    prometheus_reader,
)
from aigateway.instrumentation.telemetry import create_instrumentation


@dataclass(frozen=True)
class Exported:
    """Sample names (``..._total``, ``..._bucket``...) -> their label names, and the
    values seen for the enumerated labels (``status``, ``type``)."""

    labels_by_metric: dict[str, frozenset[str]]
    values: dict[str, frozenset[str]]

    @property
    def metrics(self) -> frozenset[str]:
        return frozenset(self.labels_by_metric)

    @property
    def labels(self) -> frozenset[str]:
        return frozenset().union(*self.labels_by_metric.values())


class _Routed(Processor):
    """A chat-like processor: routes, streams, reports usage (or an upstream error)."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return Result(
            set_headers=(("x-ai-gateway-model", "m"), ("x-ai-gateway-backend", "b")),
            dynamic_metadata={METADATA_NAMESPACE: {"operation": "chat"}},
        )

    async def on_response_headers(self, headers: Headers) -> Result:
        return Result(stream_response_body=self.status == 200)

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        if not end_of_stream:
            return CONTINUE
        usage = {
            "input_tokens": 3,
            "output_tokens": 4,
            "total_tokens": 7,
            "cached_input_tokens": 1,
            "cache_write_input_tokens": 1,
            "reasoning_tokens": 2,
            "response_model": "m-2025",
        }
        return Result(
            dynamic_metadata={METADATA_NAMESPACE: {"backend": "b", "model": "m", **usage}}
        )


class _Refused(Processor):
    """A request a limits rule refused (and one let through with its store down)."""

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        facts = {"backend": "b", "model": "m", "rate_limited": "r"}
        raise ImmediateResponse(
            429, b"{}", dynamic_metadata={METADATA_NAMESPACE: facts}, details="rate_limited"
        )

    async def on_response_headers(self, headers: Headers) -> Result:
        return Result(dynamic_metadata={METADATA_NAMESPACE: {"rate_limit_store_error": "allow"}})


async def _refuse(instrumentation: Instrumentation) -> None:
    for body in (True, False):
        processor = instrumentation.wrap(_Refused())
        await processor.on_request_headers(
            Headers([(":method", "POST"), (":path", "/v1/chat/completions")])
        )
        try:
            if body:
                await processor.on_request_body(b"{}", True)
            else:
                await processor.on_response_headers(
                    Headers([(":status", "200")], end_of_stream=True)
                )
        except ImmediateResponse:
            pass
        await processor.on_stream_end(Outcome(response_complete=True, status=429))


async def _drive(instrumentation: Instrumentation, status: int) -> None:
    processor = instrumentation.wrap(_Routed(status))
    await processor.on_request_headers(
        Headers([(":method", "POST"), (":path", "/v1/chat/completions"), ("x-tenant-id", "acme")])
    )
    await processor.on_request_body(b"{}", True)
    await processor.on_response_headers(Headers([(":status", str(status))]))
    for chunk in (b"data: one\n\n", b"data: two\n\n", b""):
        await processor.on_response_body(chunk, chunk == b"")
    await processor.on_stream_end(Outcome(response_complete=True, status=status))


@cache
def exported() -> Exported:
    registry = CollectorRegistry(auto_describe=True)
    histograms = InProcessHistograms()
    provider = create_meter_provider(
        [prometheus_reader(registry, histograms)], histograms, cardinality=100
    )
    instrumentation = create_instrumentation(
        provider.get_meter(METER_NAME),
        histograms,
        models={"m"},
        backends={"b"},
        schema="both",
        header_labels=[HeaderLabel("x-tenant-id", "tenant", frozenset({"acme", "globex"}))],
        prices={"m": Price(1, 2)},
        providers={"b": "openai"},
        rules={"r"},
    )

    async def run() -> None:
        await _drive(instrumentation, 200)
        await _drive(instrumentation, 500)
        await _refuse(instrumentation)
        instrumentation.record_attempt(Attempt("b", "m", "server_error", 503))

    asyncio.run(run())
    text = generate_latest(registry).decode()
    provider.shutdown()
    labels: dict[str, set[str]] = {}
    values: dict[str, set[str]] = {
        "status": set(),
        "type": set(),
        "gen_ai_token_type": set(),
        "decision": {"allow", "deny"},
        # Every value a header label can take, not just the ones this run sent.
        "tenant": {"acme", "globex", "other", "none"},
    }
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(("aigateway_", "gen_ai_")):
                continue
            labels.setdefault(sample.name, set()).update(sample.labels)
            for name in values:
                if name in sample.labels:
                    values[name].add(sample.labels[name])
    return Exported(
        {k: frozenset(v) for k, v in labels.items()}, {k: frozenset(v) for k, v in values.items()}
    )


# -- PromQL ------------------------------------------------------------------------------

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_MATCHER = re.compile(rf"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*({_STRING})\s*(,|$)")
_SELECTOR = re.compile(r"\{([^{}]*)\}")
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_NUMBER = re.compile(r"(?<![\w:.])(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "by", "without", "on", "ignoring", "inf", "nan"}
    | {"group_left", "group_right", "offset", "atan2"}
)


@dataclass
class Refs:
    """The metric names, label names and label matchers an expression uses."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


def refs(expr: str) -> Refs:
    """Metric names (identifiers that are not functions, keywords or numbers), label
    names in ``{...}`` matchers and in ``by``/``without``/``on``/``ignoring``/
    ``group_*`` clauses, and the matchers as (label, op, value). Raises ``ValueError``
    on a selector it cannot read, rather than skip it."""
    out = Refs()

    def selector(m: re.Match[str]) -> str:
        body, pos = m.group(1), 0
        while pos < len(body) and body[pos:].strip():
            matcher = _MATCHER.match(body, pos)
            if matcher is None:
                raise ValueError(f"cannot read the matchers {{{body}}} in {expr!r}")
            label, op, value = matcher.group(1), matcher.group(2), matcher.group(3)[1:-1]
            out.labels.add(label)
            out.matchers.append((label, op, value))
            pos = matcher.end()
        return " "

    rest = _SELECTOR.sub(selector, expr)

    def clause(m: re.Match[str]) -> str:
        out.labels.update(x.strip() for x in m.group(2).split(",") if x.strip())
        return " "

    rest = _CLAUSE.sub(clause, rest)
    rest = _RANGE.sub(" ", rest)
    rest = _OFFSET.sub(" ", rest)
    rest = re.sub(_STRING, " ", rest)
    rest = _NUMBER.sub(" ", rest)
    for m in _IDENT.finditer(rest):
        name = m.group(0)
        follows = rest[m.end() :].lstrip()
        if follows.startswith("(") or name.lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        out.metrics.add(name)
    return out


def literal_alternatives(op: str, value: str) -> list[str] | None:
    """The values a matcher names: the literal, or a regex's ``a|b|c`` alternatives;
    ``None`` for a regex that is more than plain alternatives (``.*``, ``$var``)."""
    if op in ("=", "!="):
        return [value]
    words = value.split("|")
    if all(re.fullmatch(r"[a-zA-Z0-9_-]+", w) for w in words):
        return words
    return None


def problems(expr: str, *, known_metrics: set[str], allowed_labels: set[str]) -> list[str]:
    """What in ``expr`` names a metric, label or label value the gateway does not export."""
    found = refs(expr)
    issues = [f"unknown metric {m!r}" for m in sorted(found.metrics - known_metrics)]
    issues += [f"unknown label {label!r}" for label in sorted(found.labels - allowed_labels)]
    values = exported().values
    for label, op, value in found.matchers:
        allowed = values.get(label)
        words = literal_alternatives(op, value)
        if allowed is not None and words is not None:
            issues += [f"{label}={w!r} never exported" for w in words if w not in allowed]
    return issues
