"""The lifecycle every model-routed endpoint shares (docs/architecture.md, "Request
lifecycle"): parse the JSON body, look up its ``model``, route to the backend, translate
for the backend's schema, add its credentials, translate the response back and report
usage.

The processor reports what happened (backend, model, usage, failure) as dynamic
metadata under ``aigateway`` as soon as it knows it (routing facts at routing, usage when
the backend reports it, mid-stream only the counts that changed), and marks the chunk
that ends the client's response; it never records a metric.
Endpoints subclass :class:`RoutedProcessor` and say how to validate a request and
which translator a route uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from aigateway.extproc.framework.processor import (
    CONTINUE,
    LOCAL_REPLY_DETAILS_PREFIX,
    Headers,
    ImmediateResponse,
    LocalError,
    Outcome,
    Processor,
    Result,
)
from aigateway.extproc.gateway.attempts import (
    ANSWERED_BY_HEADER,
    ATTEMPT_BACKEND_HEADER,
    CLIENT_HEADERS_NAMESPACE,
    CLIENT_LABELS_HEADER,
    CLIENT_NAMESPACE,
    CLIENT_PATH,
    LB_NAMESPACE,
    RestingBackends,
    leave_out,
)
from aigateway.extproc.gateway.backends import (
    BackendAuthError,
    ModelRoute,
    RoutingTable,
)
from aigateway.extproc.gateway.errors import openai_error_reply, written
from aigateway.extproc.gateway.forwarded_headers import (
    CLIENT_CREDENTIALS,
    ENVOY_OWNED,
    GATEWAY_HEADER_PREFIX,
)
from aigateway.extproc.gateway.limits import Admission, Grant, ModelLimits, Usage, Verdict
from aigateway.instrumentation.facts import Facts, published
from aigateway.translators.contract import (
    StreamEnding,
    TokenUsage,
    TranslationError,
    Translator,
)
from aigateway.translators.matrix import ClientApi, UnsupportedEndpoint
from aigateway.translators.wire.encoding import ContentDecoder, ContentDecodingError
from aigateway.translators.wire.jsoncodec import loads_strict
from aigateway.translators.wire.sse import encode_sse_event

log = logging.getLogger("aigateway.gateway")

#: Set on the upstream request when the processor rewrites ``:path``: the client's path.
ORIGINAL_PATH_HEADER = GATEWAY_HEADER_PREFIX + "original-path"

#: The request fields that cap a generation's output, by client API.
_MAX_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
#: The most output a request reserves, whatever it asks: past any budget, and its cost
#: stays a finite double (10**307 tokens' would overflow to infinity).
_MOST_OUTPUT = 2**53

# What a request to a model with several backends loses before its attempts: the
# client's credentials (for the gateway only), and the header only Envoy sets.
_REMOVE_SEVERAL = (*CLIENT_CREDENTIALS, ATTEMPT_BACKEND_HEADER)
#: The most bytes (names and values) of client headers published for the attempts of a
#: request to a model with several backends (a larger request is refused with a 431).
CLIENT_HEADERS_MAX = 32 * 1024
#: ``x-ai-gateway-answered-by`` on an attempt the processor refused itself (a backend
#: that cannot express the request): no backend answered.
GATEWAY_ANSWERED = "-"


def _envoys(name: str) -> bool:
    """Whether a request header is Envoy's own (ext_proc leaves these alone)."""
    return name[:1] == ":" or name.startswith("x-envoy-") or name in ENVOY_OWNED


def parse_json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if not body.strip():
        raise ImmediateResponse.error(400, "The request body is empty; expected a JSON object.")
    try:
        doc = loads_strict(body)
    except UnicodeDecodeError:
        raise ImmediateResponse.error(400, "The request body is not valid UTF-8.") from None
    except ValueError as exc:
        if body.startswith(b"\xef\xbb\xbf"):
            raise ImmediateResponse.error(
                400, "The request body starts with a byte order mark; send JSON without one."
            ) from None
        raise ImmediateResponse.error(
            400, f"We could not parse the JSON body of your request: {exc}."
        ) from None
    except RecursionError:
        raise ImmediateResponse.error(400, "The JSON body is nested too deeply.") from None
    if not isinstance(doc, dict):
        raise ImmediateResponse.error(400, "The request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(body) is not None and _has_lone_surrogate(doc):
        raise ImmediateResponse.error(
            400,
            "The JSON body holds a lone UTF-16 surrogate escape (such as \\ud800), which"
            " is not a Unicode character.",
        )
    return doc


# A \uD800-\uDFFF escape: only then can a parsed string hold a lone surrogate (UTF-8
# bytes cannot encode one, and json pairs high and low escapes into one character).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(doc: Any) -> bool:
    stack = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def add_usage(facts: Facts, usage: TokenUsage) -> None:
    """Adds the token counts the backend reported to ``facts``."""
    facts["input_tokens"] = usage.input_tokens
    facts["output_tokens"] = usage.output_tokens
    facts["total_tokens"] = usage.total_tokens
    if usage.cached_input_tokens is not None:
        facts["cached_input_tokens"] = usage.cached_input_tokens
    if usage.cache_write_input_tokens is not None:
        facts["cache_write_input_tokens"] = usage.cache_write_input_tokens
    if usage.reasoning_tokens is not None:
        facts["reasoning_tokens"] = usage.reasoning_tokens


def add_grown_usage(facts: Facts, usage: TokenUsage, before: TokenUsage) -> None:
    """Adds to ``facts`` the token counts of ``usage`` that differ from ``before``."""
    if usage.input_tokens != before.input_tokens:
        facts["input_tokens"] = usage.input_tokens
    if usage.output_tokens != before.output_tokens:
        facts["output_tokens"] = usage.output_tokens
    if usage.total_tokens != before.total_tokens:
        facts["total_tokens"] = usage.total_tokens
    cached = usage.cached_input_tokens
    if cached is not None and cached != before.cached_input_tokens:
        facts["cached_input_tokens"] = cached
    cache_write = usage.cache_write_input_tokens
    if cache_write is not None and cache_write != before.cache_write_input_tokens:
        facts["cache_write_input_tokens"] = cache_write
    reasoning = usage.reasoning_tokens
    if reasoning is not None and reasoning != before.reasoning_tokens:
        facts["reasoning_tokens"] = reasoning


class ResponseMode(enum.Enum):
    """What :class:`RoutedProcessor` does with the response body it is sent."""

    #: The request was not routed (refused before routing): leave the response alone.
    UNROUTED = "unrouted"
    #: A 2xx answer: the translator turns each chunk into the client's API.
    TRANSLATE = "translate"
    #: A non-2xx answer: collected whole, then turned into the client's error shape.
    UPSTREAM_ERROR = "upstream_error"
    #: An answer nothing can be read from (an unsupported content-encoding): swallowed,
    #: and replaced at its end by a fixed error reply.
    FIXED_REPLY = "fixed_reply"
    #: The client already has the end of its response (an error event): the rest of the
    #: upstream's body is dropped.
    FINISHED = "finished"


_TRANSLATE = ResponseMode.TRANSLATE


class RoutedProcessor(Processor):
    """One request to a model-routed endpoint, from client headers to the last byte.

    Subclasses implement :meth:`validate` and :meth:`new_translator`; override a phase
    and call ``super()`` to add policy (see ``examples/subclass_processor.py``).
    """

    #: The GenAI operation name this endpoint performs, published as ``operation``.
    operation: ClassVar[str] = "chat"
    #: The client API this endpoint speaks, published as ``api`` (for the access log).
    api: ClassVar[str] = "chat_completions"
    #: Which translator this endpoint asks a route for (``translators.matrix``).
    endpoint: ClassVar[ClientApi] = "chat_completions"
    #: Whether ``limits`` rules apply (a generation; not a token count).
    limited: ClassVar[bool] = True

    __slots__ = (
        "_admission",
        "_answer_remove",
        "_attempt",
        "_body",
        "_body_held",
        "_completed",
        "_decoder",
        "_error",
        "_error_body",
        "_finish_reasons",
        "_fixed_reply",
        "_mode",
        "_payload",
        "_published_answer",
        "_request_headers",
        "_response_headers",
        "_response_model",
        "_route",
        "_status",
        "_stream_asked",
        "_streamed",
        "_streamed_bytes",
        "_translator",
        "_upstream_headers",
        "_usage",
        "resting",
        "table",
    )

    def __init__(
        self,
        table: RoutingTable,
        *,
        attempt: bool = False,
        resting: RestingBackends | None = None,
    ) -> None:
        self.table = table
        #: One attempt of a request to a model with several backends, in the cluster's
        #: upstream filter chain (docs/architecture.md, "Routing over several backends"):
        #: translate the request for the backend Envoy picked and name it in the answer.
        self._attempt = attempt
        self.resting = resting
        self._payload: dict[str, Any] | None = None  # the client's request (several backends)
        self._body = b""
        self._upstream_headers: Headers | None = None  # attempt: the header map Envoy gave
        self._answer_remove: tuple[str, ...] = ()  # response headers only for us
        self._request_headers: Headers | None = None
        self._body_held = 0  # bytes reserved in the table's BodyBudget
        self._route: ModelRoute | None = None
        self._translator: Translator | None = None
        self._mode = ResponseMode.UNROUTED
        self._status = 0
        self._response_headers: Headers | None = None
        self._decoder: ContentDecoder | None = None
        self._streamed = False
        self._stream_asked = False  # the client's request has "stream": true
        self._error_body: list[bytes] = []  # the non-2xx body (UPSTREAM_ERROR)
        self._fixed_reply = b""  # the reply that replaces the upstream's body (FIXED_REPLY)
        self._usage: TokenUsage | None = None
        self._error: str | None = None
        self._completed = False  # the client has the end of its response
        self._response_model: str | None = None  # the model the backend says answered
        self._finish_reasons: tuple[str, ...] = ()
        # The response model and finish reasons the whole facts last carried.
        self._published_answer: tuple[str | None, tuple[str, ...]] = (None, ())
        self._admission: Admission | None = None  # the route's limits said (limits:)
        self._streamed_bytes = 0  # streamed to the client, while a reservation is held

    # -- what endpoints define -----------------------------------------------------------

    def validate(self, payload: dict[str, Any]) -> None:
        """Raise :class:`ImmediateResponse` (400) for a request this endpoint refuses.

        Runs on the parsed body once its ``model`` is found in the config (so refusals
        are counted as that model's), before the body is translated."""

    def new_translator(self, route: ModelRoute) -> Translator:
        """The translator for this request on ``route`` (400 if the backend cannot)."""
        try:
            return route.translator(self.endpoint, self.client_version())
        except UnsupportedEndpoint as exc:
            raise ImmediateResponse.error(
                400,
                f"The model `{route.model.name}` {exc.reason}.",
                param="model",
                code="unsupported_endpoint",
            ) from None

    def route_for(self, route: ModelRoute) -> ModelRoute:
        """The route of a request to a model with several backends: by default ``route``
        itself (Envoy picks a backend per attempt); an endpoint that needs one given
        backend returns that backend's route with ``several=False``."""
        return route

    def client_version(self) -> str | None:
        """The version of its API the client asked for, when its API has one."""
        return None

    def local_error_body(self, error: LocalError) -> bytes:
        """An error the gateway answers itself, in this endpoint's client API (OpenAI's
        error JSON; endpoints of other client APIs override it)."""
        return openai_error_reply(error)

    def _local_reply(self, reply: ImmediateResponse) -> ImmediateResponse:
        if reply.body is None and reply.local_error is not None:
            written(reply, self.local_error_body(reply.local_error))
        if self._attempt:
            reply.headers = (*reply.headers, (ANSWERED_BY_HEADER, GATEWAY_ANSWERED))
        if reply.dynamic_metadata is None:  # refused before routing: no backend yet
            reply.dynamic_metadata = published({"api": self.api})
        return reply

    # -- request ---------------------------------------------------------------------

    async def on_request_headers(self, headers: Headers) -> Result:
        try:
            return self._check_request_headers(headers)
        except ImmediateResponse as reply:
            raise self._local_reply(reply) from None

    def _check_request_headers(self, headers: Headers) -> Result:
        if self._attempt:
            headers = self._client_view(headers)
        self._request_headers = headers
        if headers.method != "POST":
            raise ImmediateResponse.error(
                405,
                f"Method {headers.method} is not allowed on {headers.path.partition('?')[0]};"
                " use POST.",
                code="method_not_allowed",
            )
        if headers.end_of_stream:
            raise ImmediateResponse.error(400, "The request body is empty; expected a JSON object.")
        encoding = headers.get("content-encoding", "identity")
        if encoding and encoding.lower() != "identity":
            raise ImmediateResponse.error(
                415, f"Request bodies with content-encoding {encoding!r} are not supported."
            )
        return CONTINUE

    def _reserve_body(self, size: int) -> None:
        if not self.table.body_budget.reserve(size):
            raise ImmediateResponse.error(
                503,
                "The gateway is busy with other large requests; retry shortly.",
                type="server_error",
                code="overloaded",
                headers=(("retry-after", "1"),),
            )
        self._body_held = size

    def _release_body(self) -> None:
        self.table.body_budget.release(self._body_held)
        self._body_held = 0

    def _client_view(self, headers: Headers) -> Headers:
        """An attempt's request headers as the client's request had them: Envoy hands
        every attempt the header map the previous attempts changed, so the client's path
        and headers come from the metadata the listener's processor published; Envoy's
        own headers and the backend it picked from the map."""
        self._upstream_headers = headers
        client = headers.metadata.get(CLIENT_NAMESPACE)
        path = client.get(CLIENT_PATH) if client is not None else None
        sent = headers.metadata.get(CLIENT_HEADERS_NAMESPACE, {})
        if not isinstance(path, str) or not isinstance(sent, Mapping):
            raise ImmediateResponse.error(
                500,
                "The gateway is misconfigured: Envoy did not forward the client's request to"
                f" the attempt (metadata {CLIENT_NAMESPACE}; regenerate the Envoy config).",
                type="server_error",
                code="gateway_misconfigured",
            )
        pairs = [
            (name, path if name == ":path" else value)
            for name, value in headers
            if _envoys(name) or name == ATTEMPT_BACKEND_HEADER
        ]
        pairs.extend(
            (name, value)
            for name, value in sent.items()
            if isinstance(value, str) and not _envoys(name)
        )
        return Headers(pairs, end_of_stream=headers.end_of_stream)

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        try:
            # Refused at the body, not the headers: a reply before the upload ends makes
            # Envoy close the client's connection with the answer unread.
            self._reserve_body(len(body))
            return await self._route_body(body, end_of_stream)
        except ImmediateResponse as reply:
            raise self._local_reply(reply) from None
        finally:
            self._release_body()

    async def _route_body(self, body: bytes, end_of_stream: bool) -> Result:
        if not end_of_stream:
            # Routing needs the whole body before any of it goes upstream.
            raise ImmediateResponse.error(
                500,
                "The gateway is misconfigured: Envoy must send request bodies BUFFERED to"
                " the processor (processing_mode.request_body_mode).",
                code="gateway_misconfigured",
            )
        payload = parse_json_body(body)
        self._stream_asked = payload.get("stream") is True
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise ImmediateResponse.error(
                400, "You must provide a model parameter.", param="model", code="missing_model"
            )
        route = self.table.lookup(model)
        if self._attempt and route is not None:
            backend = (
                self._request_headers.get(ATTEMPT_BACKEND_HEADER) if self._request_headers else None
            )
            route = self.table.lookup_on(model, backend or "")
            if route is None:
                raise ImmediateResponse.error(
                    500,
                    f"The gateway is misconfigured: Envoy picked backend {backend!r}, which"
                    f" does not serve model {model[:200]!r} (regenerate the Envoy config).",
                    type="server_error",
                    code="gateway_misconfigured",
                )
        if route is None:
            raise ImmediateResponse.error(
                404,
                f"The model `{model[:200]}` does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
        if route.several and not self._attempt:
            route = self.route_for(route)
        # From here on the request is this model's, whatever fails (docs/architecture.md,
        # "Accounting rules"): every refusal carries the routing facts.
        self._route = route
        try:
            return await self._route_request(route, payload, body)
        except ImmediateResponse as reply:
            self._error = self._local_reply(reply).details.removeprefix(LOCAL_REPLY_DETAILS_PREFIX)
            reply.dynamic_metadata = self._metadata()
            if self._admission is not None and self._admission.verdict is Verdict.ADMITTED:
                reply.headers = (*reply.headers, *self._admission.headers)
            raise
        except Exception:
            request_id = self._request_id()
            log.exception("request %s: failed to route to %s", request_id, route.backend.name)
            self._error = "internal_error"
            raise ImmediateResponse.error(
                500,
                f"The gateway failed to process the request (request id {request_id}).",
                type="server_error",
                code="internal_error",
                dynamic_metadata=self._metadata(),
            ) from None

    async def _route_request(
        self, route: ModelRoute, payload: dict[str, Any], body: bytes
    ) -> Result:
        limiter = self.table.limiter
        if limiter is not None and self.limited and not self._attempt:
            limits = limiter.limits_for(route.model.name)
            if limits is not None:  # before any upstream call, once per client request
                await self._admit(limits, payload, body, route)
        if route.several and not self._attempt:
            return self._route_to_model(route, payload, body)
        if not self._attempt:
            self.validate(payload)
        translator = self._translator = self.new_translator(route)
        try:
            upstream = translator.request(payload, body)
        except TranslationError as exc:
            raise ImmediateResponse.error(400, exc.message, param=exc.param) from None

        final_body = body if upstream.body is None else upstream.body
        path = route.upstream_path_prefix + upstream.path
        set_headers: list[tuple[str, str]] = [
            ("accept-encoding", "identity"),
            *upstream.headers,
        ]
        if not self._attempt:  # an attempt was routed already, by Envoy
            set_headers[:0] = [
                (self.table.model_header, route.model.name),
                (self.table.backend_header, route.backend.name),
            ]
        client_headers = self._request_headers
        client_path = client_headers.path if client_headers is not None else ""
        if self._attempt:
            set_headers.append((":path", path))
            if upstream.body is None:
                # The header map may hold the length an earlier attempt's body had.
                set_headers.append(("content-length", str(len(body))))
        elif path != client_path:
            set_headers.append((":path", path))
            # For the access log, which shows the client's path (Envoy's own
            # x-envoy-original-path is not ours to set: ext_proc may not touch x-envoy-*).
            # The backend gets it too: never the client's query string (up to 60 KiB).
            client_route = client_path.partition("?")[0]
            if client_route != path:
                set_headers.append((ORIGINAL_PATH_HEADER, client_route))
        try:
            set_headers.extend(await route.auth.headers("POST", path, final_body))
        except BackendAuthError as exc:
            raise ImmediateResponse.error(
                exc.status,
                f"The gateway could not get credentials for backend {route.backend.name}:"
                f" {exc.message}",
                type="server_error" if exc.status >= 500 else None,
                code="backend_auth_failed",
            ) from None
        if self._attempt:
            return self._attempt_result(set_headers, route, upstream.body)
        remove = (
            route.forwarded.removals(client_headers, frozenset([n for n, _ in set_headers]))
            if client_headers is not None
            else ()
        )
        return Result(
            set_headers=tuple(set_headers),
            remove_headers=remove,
            body=upstream.body,
            clear_route_cache=True,
            dynamic_metadata=self._metadata(),
        )

    async def _admit(
        self, limits: ModelLimits, payload: dict[str, Any], body: bytes, route: ModelRoute
    ) -> None:
        """Reserve this request's most in every budget of its model, or refuse it
        (docs/limits.md)."""
        limiter = self.table.limiter
        assert limiter is not None
        admission = self._admission = await limiter.admit(
            limits, self._request_headers, len(body), self._max_output(limits, payload)
        )
        verdict = admission.verdict
        if verdict is Verdict.REFUSED:
            why = (
                "is larger than the whole budget"
                if admission.too_large
                else f"does not fit; retry in {max(round(admission.retry_after), 1)}s"
            )
            raise ImmediateResponse.error(
                429,
                f"Rate limit {admission.rule!r} reached for {route.model.name}: this request"
                f" {why}.",
                code="rate_limit_exceeded",
                headers=admission.headers,
            )
        if verdict is Verdict.STORE_DENIED:
            raise ImmediateResponse.error(
                503,
                "The gateway cannot check this request's limits right now; retry later.",
                type="server_error",
                code="limits_unavailable",
                headers=(("retry-after", "1"),),
            )

    def _max_output(self, limits: ModelLimits, payload: dict[str, Any]) -> int:
        """The most output tokens this request may produce: what it asks for, else the
        model's allowance."""
        if self.operation == "embeddings":
            return 0
        for name in _MAX_OUTPUT_FIELDS:
            value = payload.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return min(value, _MOST_OUTPUT)
        return limits.max_output_tokens

    def _route_to_model(self, route: ModelRoute, payload: dict[str, Any], body: bytes) -> Result:
        """A model with several backends: Envoy routes to the model's cluster, picks a
        backend per attempt, and the attempts' processor translates for it; this one
        translates the answer of the backend that gave it."""
        self.validate(payload)
        self._payload = payload
        self._body = body
        metadata = self._metadata()
        path, sent = self._client_request(route)
        metadata[CLIENT_NAMESPACE] = {CLIENT_PATH: path}
        metadata[CLIENT_HEADERS_NAMESPACE] = sent
        if self.resting is not None:
            backends = self.table.backends_of(route.model.name)
            lb = leave_out(self.resting.resting(backends), backends)
            if lb is not None:
                metadata[LB_NAMESPACE] = lb
        return Result(
            set_headers=(
                (self.table.model_header, route.model.name),
                ("accept-encoding", "identity"),
            ),
            remove_headers=(*_REMOVE_SEVERAL, self.table.backend_header),
            clear_route_cache=True,
            dynamic_metadata=metadata,
        )

    def _client_request(self, route: ModelRoute) -> tuple[str, dict[str, str]]:
        """What every attempt starts from: the client's path, and those of its headers
        the model's attempts may need (repeated ones joined with commas)."""
        headers = self._request_headers
        if headers is None:
            return "", {}
        needed = self.table.attempt_headers(route.model.name).allows
        sent: dict[str, str] = {}
        size = 0
        for name, value in headers:
            if not needed(name) or _envoys(name):
                continue
            size += len(name) + len(value)
            sent[name] = f"{sent[name]},{value}" if name in sent else value
        if size > CLIENT_HEADERS_MAX:
            raise ImmediateResponse.error(
                431,
                f"The request's headers for model `{route.model.name}` are larger than"
                f" {CLIENT_HEADERS_MAX} bytes.",
                code="request_headers_too_large",
            )
        return headers.path, sent

    def _attempt_result(
        self, set_headers: list[tuple[str, str]], route: ModelRoute, body: bytes | None
    ) -> Result:
        """The attempt's changes to the header map Envoy gave it: the backend gets what it
        sets, the client's headers its allowlist takes (as the client sent them) and
        Envoy's own; everything else (earlier attempts' changes, the gateway's routing
        headers) goes."""
        current = self._upstream_headers
        client = self._request_headers
        assert current is not None and client is not None
        allows = route.forwarded.allows
        mine = {name for name, _ in set_headers}
        mine.add("content-length")  # set above, or by the framework for a replaced body
        final_set = list(set_headers)
        for name, value in client.first.items():
            if (
                name not in mine
                and not _envoys(name)
                and allows(name)
                and current.get(name) != value
            ):
                final_set.append((name, value))
        remove: list[str] = []
        for name in current.first:
            if name in mine or _envoys(name) or (name in client and allows(name)):
                continue
            remove.append(name)
        return Result(set_headers=tuple(final_set), remove_headers=tuple(remove), body=body)

    def _request_id(self) -> str:
        headers = self._request_headers
        return (headers.get("x-request-id") if headers is not None else None) or "-"

    # -- response --------------------------------------------------------------------

    async def on_response_headers(self, headers: Headers) -> Result:
        result = self._response_headers_result(headers)
        admission = self._admission
        if admission is not None and admission.headers:
            result = dataclasses.replace(
                result, set_headers=(*result.set_headers, *admission.headers)
            )
        return result

    def _response_headers_result(self, headers: Headers) -> Result:
        if self._attempt:
            return self._attempt_answered(headers)
        if self._payload is not None and self._translator is None:
            answered = self._answered_by(headers)
            if answered is not None:
                return answered
        translator = self._translator
        if translator is None:  # a reply to a request we did not route; leave it alone
            return CONTINUE
        self._status = status = headers.status
        self._response_headers = headers
        remove = self._answer_remove
        encoding = (headers.get("content-encoding") or "identity").lower()
        if encoding != "identity":
            # We asked for identity; an upstream that compresses anyway is decoded here,
            # and the client gets the decoded bytes (never a stale encoding header).
            if not ContentDecoder.supports(encoding):
                self._error = "upstream_unsupported_encoding"
                self._mode = ResponseMode.FIXED_REPLY
                self._fixed_reply = self.local_error_body(
                    LocalError(
                        502,
                        f"The upstream answered with content-encoding {encoding!r}, which the"
                        " gateway cannot decode.",
                        code="upstream_unsupported_encoding",
                    )
                )
                return Result(
                    set_headers=((":status", "502"), ("content-type", "application/json")),
                    remove_headers=(*remove, "content-encoding"),
                    body=self._fixed_reply if headers.end_of_stream else None,
                    dynamic_metadata=self._metadata() if headers.end_of_stream else None,
                )
            self._decoder = ContentDecoder(encoding)
            remove = (*remove, "content-encoding")
        if not 200 <= status < 300:
            self._error = f"upstream_http_{status}"
            self._mode = ResponseMode.UPSTREAM_ERROR
            if headers.end_of_stream:
                result = self._finish_error(b"")
                return dataclasses.replace(result, remove_headers=remove) if remove else result
            return Result(remove_headers=remove) if remove else CONTINUE
        self._mode = ResponseMode.TRANSLATE
        decision = translator.response_headers(status, headers.get("content-type", "") or "")
        self._streamed = decision.streamed
        set_headers = (("content-type", decision.content_type),) if decision.content_type else ()
        if headers.end_of_stream:
            return Result(
                set_headers=set_headers, remove_headers=remove, dynamic_metadata=self._metadata()
            )
        return Result(
            set_headers=set_headers, remove_headers=remove, stream_response_body=decision.streamed
        )

    def _attempt_answered(self, headers: Headers) -> Result:
        route = self._route
        if route is None:
            return CONTINUE
        if self.resting is not None:
            self.resting.note(route.backend.name, headers.status, headers.first)
        answered = [(ANSWERED_BY_HEADER, route.backend.name)]
        labels = self.table.config.metrics.labels_from_headers
        client = self._request_headers
        if labels and client is not None:
            # Envoy's per-attempt log reads it; ASCII escapes (not jsoncodec.dumps): it
            # is a header value.
            values = {h.header: client.get(h.header) for h in labels if h.header in client}
            answered.append((CLIENT_LABELS_HEADER, json.dumps(values, separators=(",", ":"))))
        return Result(set_headers=tuple(answered))

    def _answered_by(self, headers: Headers) -> Result | None:
        """Takes the route of the backend whose answer this is (several backends) and
        makes its translator; a :class:`Result` when there is nothing to translate."""
        route = self._route
        assert route is not None and self._payload is not None
        answered = headers.get(ANSWERED_BY_HEADER)
        if answered == GATEWAY_ANSWERED:
            # An attempt the processor refused: its reply is already the client's error.
            self._error = f"attempt_refused_{headers.status}"
            return Result(remove_headers=(ANSWERED_BY_HEADER,), dynamic_metadata=self._metadata())
        if answered is not None:
            route = self.table.lookup_on(route.model.name, answered) or route
        # else Envoy's own reply (every attempt failed): in the first backend's terms.
        self._route = route
        self._answer_remove = (ANSWERED_BY_HEADER, CLIENT_LABELS_HEADER)
        translator = self._translator = self.new_translator(route)
        try:
            # Sets up the translator's per-request state; the request itself went upstream
            # as the attempt's processor translated it.
            translator.request(self._payload, self._body)
        except TranslationError:
            pass
        self._payload = None
        self._body = b""
        return None

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        mode = self._mode
        # Every streamed chunk comes here: TRANSLATE is tested first, and through a module
        # name (an Enum class attribute costs a metaclass __getattr__ hook per lookup).
        if mode is not _TRANSLATE:
            if mode is ResponseMode.UNROUTED:
                return CONTINUE
            if mode is ResponseMode.FIXED_REPLY:
                if not end_of_stream:
                    return Result(body=b"")
                return Result(body=self._fixed_reply, dynamic_metadata=self._metadata())
            if mode is ResponseMode.FINISHED:
                return Result(
                    body=b"", dynamic_metadata=self._metadata() if end_of_stream else None
                )
        decoded = body
        if self._decoder is not None:
            try:
                decoded = self._decoder.decode(body, end_of_stream)
            except ContentDecodingError:
                return self._broken_encoding(end_of_stream)
        if mode is not _TRANSLATE:  # UPSTREAM_ERROR
            self._error_body.append(decoded)
            if not end_of_stream:
                return Result(body=b"")
            return self._finish_error(b"".join(self._error_body))
        translator = self._translator
        assert translator is not None
        out = translator.response_body(decoded, end_of_stream)
        if self._streamed and self._admission is not None:
            self._streamed_bytes += len(decoded if out.body is None else out.body)
        # Facts are published as soon as they change, so that whatever ends the stream
        # later (the client leaving, a reset) finds them in Envoy and in the metrics; a
        # usage reported before publishes only the counts that changed (the Gemini API's
        # grow on every chunk): docs/architecture.md, "Request lifecycle".
        changed = False
        grown: Facts | None = None  # the counts of a usage reported before that changed
        usage = out.usage
        if usage is not None and usage != self._usage:
            if self._usage is None:
                changed = True
            else:
                grown = {}
                add_grown_usage(grown, usage, self._usage)
            self._usage = dataclasses.replace(usage)
        if out.error is not None and self._error is None:
            self._error = out.error
            changed = True
        self._response_model = out.model
        self._finish_reasons = out.finish_reasons
        if grown is not None and (out.model, out.finish_reasons) != self._published_answer:
            changed = True  # the backend said more than its counts: the whole facts again
        ends_response = out.complete and not self._completed
        if ends_response:
            self._completed = True
        new_body = out.body
        if new_body is None and self._decoder is not None:
            new_body = decoded  # the client gets decoded bytes throughout
        if out.error is not None:
            # An error the upstream put in the stream may quote what it was sent.
            new_body = self._redact(decoded if new_body is None else new_body)
        if not end_of_stream:
            if changed or ends_response:
                metadata = self._metadata()
            elif grown:
                metadata = published(grown)
            elif new_body is None:
                return CONTINUE
            else:
                metadata = None
            return Result(body=new_body, dynamic_metadata=metadata, end_of_response=ends_response)
        if out.error is not None and not self._streamed:
            # A 2xx the client cannot use (not JSON): make it the error it is.
            return Result(
                set_headers=((":status", "502"), ("content-type", "application/json")),
                body=new_body,
                dynamic_metadata=self._metadata(),
                end_of_response=True,
            )
        return Result(body=new_body, dynamic_metadata=self._metadata(), end_of_response=True)

    async def on_stream_end(self, outcome: Outcome) -> None:
        admission = self._admission
        grant = admission.grant if admission is not None else None
        if grant is None:
            return
        try:
            usage = self._charged_usage(grant)
        except Exception:
            log.exception("request %s: cannot tell what to charge", self._request_id())
            return  # the reservation stays: an overcharge, never an undercharge
        await asyncio.shield(grant.limiter.settle_soon(grant, usage))

    def _charged_usage(self, grant: Grant) -> Usage:
        """What a finished request costs its budgets: the usage the accounting records;
        for a stream cut short, at least the output already streamed (docs/limits.md)."""
        usage = self._usage or TokenUsage()
        prompt, completion = usage.input_tokens, usage.output_tokens
        if self._streamed and (not self._completed or self._error is not None):
            # Every token is at least one byte of what the client already has.
            completion = max(completion, min(self._streamed_bytes, grant.max_output))
            if self._usage is None:  # the backend took the prompt, and said nothing yet
                prompt = grant.input_estimate
        return Usage(
            prompt,
            completion,
            usage.cached_input_tokens or 0,
            usage.cache_write_input_tokens or 0,
        )

    def _broken_encoding(self, end_of_stream: bool) -> Result:
        """The upstream's compressed body does not decode: end with an error."""
        self._error = "upstream_bad_encoding"
        self._decoder = None
        text = "The upstream sent a body that does not match its content-encoding."
        error = LocalError(502, text, code="upstream_bad_encoding")
        if self._streamed:
            # The response is committed: end the stream with an error event.
            self._mode = ResponseMode.FINISHED
            self._completed = True
            translator = self._translator
            event = (
                translator.end_stream(text, "upstream_bad_encoding")
                if isinstance(translator, StreamEnding)
                else encode_sse_event(openai_error_reply(error))
            )
            return Result(
                body=event,
                dynamic_metadata=self._metadata(),
                end_of_response=True,
            )
        self._mode = ResponseMode.FIXED_REPLY
        self._fixed_reply = self.local_error_body(error)
        return Result(
            set_headers=((":status", "502"), ("content-type", "application/json")),
            body=self._fixed_reply if end_of_stream else b"",
            dynamic_metadata=self._metadata() if end_of_stream else None,
        )

    def _finish_error(self, body: bytes) -> Result:
        assert self._translator is not None
        headers = self._response_headers
        upstream = headers.first if headers is not None else {}
        new_body = self._translator.error_body(self._status, body, upstream)
        redacted = self._redact(body if new_body is None else new_body)
        if new_body is None and self._decoder is None and redacted is body:
            return Result(dynamic_metadata=self._metadata())
        return Result(
            set_headers=(("content-type", "application/json"),),
            body=redacted,
            dynamic_metadata=self._metadata(),
        )

    def _redact(self, body: bytes) -> bytes:
        """``body`` without the backend's credentials, which some upstreams echo back in
        their error messages ("Incorrect API key provided: ...")."""
        route = self._route
        if route is None:
            return body
        for secret in route.auth.secret_values():
            if secret in body:
                body = body.replace(secret, b"[redacted]")
        return body

    def _metadata(self) -> dict[str, Mapping[str, Any]]:
        """What the request has learnt so far (:class:`Facts`), as dynamic metadata."""
        route = self._route
        assert route is not None
        facts: Facts = {
            "backend": route.backend.name,
            "model": route.model.name,
            "operation": self.operation,
            "api": self.api,
        }
        if self._stream_asked:
            facts["stream"] = True
        if self._usage is not None:
            add_usage(facts, self._usage)
        if self._error is not None:
            facts["error"] = self._error
        if self._response_model is not None:
            facts["response_model"] = self._response_model
        if self._finish_reasons:
            facts["finish_reasons"] = list(self._finish_reasons)
        self._published_answer = (self._response_model, self._finish_reasons)
        admission = self._admission
        if admission is not None and admission.verdict is not Verdict.ADMITTED:
            if admission.verdict is Verdict.REFUSED:
                facts["rate_limited"] = admission.rule
            else:
                facts["rate_limit_store_error"] = admission.verdict.value
        return published(facts)
