"""Which of the client's headers a backend receives: an allowlist per route
(docs/architecture.md, "Headers a backend receives").

A backend gets what its API needs (the body's type, the API's own version and feature
headers), the trace context, and the client headers its config names in
``forward_headers``; the gateway adds the backend's credentials. Every other client
header is removed from the upstream request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aigateway.extproc.framework.processor import Headers
from aigateway.translators.matrix import BackendOptions, vertex_claude

__all__ = [
    "BASELINE",
    "CLIENT_CREDENTIALS",
    "ENVOY_OWNED",
    "GATEWAY_HEADER_PREFIX",
    "NEVER_FORWARDED",
    "ForwardedHeaders",
    "forwarded_headers",
]

#: The gateway's own request headers (routing, the client's path for the access log):
#: what a client sends under this prefix is removed before anything reads it.
GATEWAY_HEADER_PREFIX = "x-ai-gateway-"

#: Every backend: the body's framing and type, and the W3C trace context.
_EVERY_BACKEND = frozenset({"content-type", "content-length", "traceparent", "tracestate"})
#: The Anthropic API's version and beta-feature headers, as Messages clients send them.
_ANTHROPIC = frozenset({"anthropic-version", "anthropic-beta"})
#: Claude on Vertex AI takes the version in the body, the beta features as a header.
_VERTEX_CLAUDE = frozenset({"anthropic-beta"})

#: The client's credentials: they are for the gateway, never for a backend.
CLIENT_CREDENTIALS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")

#: Never forwarded, even when a configured prefix matches: the client's credentials (they
#: are for the gateway), cookies, and the headers of the client's own connection.
NEVER_FORWARDED = frozenset(
    {
        *CLIENT_CREDENTIALS,
        "proxy-authorization",
        "cookie",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "host",
    }
)


#: Headers Envoy owns, besides pseudo-headers and ``x-envoy-*`` (which ext_proc may not
#: change): the body's framing, the scheme its route matching reads (without it no route
#: matches), and its request id (removed upstream, it is gone from the access log too).
ENVOY_OWNED = frozenset({"transfer-encoding", "x-forwarded-proto", "x-request-id"})


#: How many header names one allowlist remembers its verdict for.
_NAMES_REMEMBERED = 1024


@dataclass(slots=True, frozen=True)
class ForwardedHeaders:
    """The client headers one route's backend receives: exact ``names``, and names
    starting with one of ``prefixes`` (except :data:`NEVER_FORWARDED` and the gateway's
    own)."""

    names: frozenset[str]
    prefixes: tuple[str, ...] = ()
    #: Each header name seen: whether it is never removed (allowed, or Envoy's); the
    #: config decides it, so it is worked out once per name (bounded: names are the
    #: client's).
    _verdicts: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def allows(self, name: str) -> bool:
        """Whether the backend may receive the client's header ``name`` (lower-case)."""
        if name in self.names:
            return True
        return (
            bool(self.prefixes)
            and name.startswith(self.prefixes)
            and name not in NEVER_FORWARDED
            and not name.startswith(GATEWAY_HEADER_PREFIX)
        )

    def removals(self, headers: Headers, kept: frozenset[str]) -> tuple[str, ...]:
        """The names in ``headers`` to remove upstream: every one not allowed, except
        ``kept`` (the headers the gateway sets) and Envoy's own (:data:`ENVOY_OWNED`)."""
        verdicts = self._verdicts
        remove: list[str] = []
        for name, _ in headers.pairs:
            never = verdicts.get(name)
            if never is None:
                never = (
                    name[:1] == ":"
                    or name in ENVOY_OWNED
                    or name.startswith("x-envoy-")
                    or self.allows(name)
                )
                if len(verdicts) < _NAMES_REMEMBERED:
                    verdicts[name] = never
            if never or name in kept or name in remove:
                continue
            remove.append(name)
        return tuple(remove)


#: What every backend receives, and nothing more.
BASELINE = ForwardedHeaders(_EVERY_BACKEND)


def forwarded_headers(options: BackendOptions, configured: tuple[str, ...]) -> ForwardedHeaders:
    """The allowlist of a route: its schema's needs plus the backend's
    ``forward_headers`` (names, or prefixes ending in ``*``)."""
    names = set(_EVERY_BACKEND)
    if options.schema == "anthropic":
        names |= _ANTHROPIC
    elif vertex_claude(options) is not None:
        names |= _VERTEX_CLAUDE
    prefixes: list[str] = []
    for entry in configured:
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            names.add(entry)
    return ForwardedHeaders(frozenset(names), tuple(prefixes))
