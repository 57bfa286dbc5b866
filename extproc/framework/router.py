"""Picks the processor for a request by its ``:path``, and wraps it; holds the format the
application's clients get errors in."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aigateway.extproc.framework.processor import (
    ErrorFormatter,
    Headers,
    ImmediateResponse,
    Processor,
    Result,
    plain_error,
)

#: Makes one processor per request (one ext_proc stream).
ProcessorFactory = Callable[[], Processor]
#: A function from a processor to the processor that wraps it: a
#: :class:`~aigateway.extproc.ProcessorWrapper` subclass, ``functools.partial`` of one, or
#: any callable. The router applies it to every processor it makes.
Wrap = Callable[[Processor], Processor]


def compose(*wraps: Wrap) -> Wrap:
    """One wrap from several, the first outermost: ``compose(a, b)(p) == a(b(p))``."""

    def wrap(processor: Processor) -> Processor:
        for w in reversed(wraps):
            processor = w(processor)
        return processor

    return wrap


class NotFoundProcessor(Processor):
    """Answers 404 for paths no processor serves (written by the router's
    :data:`~aigateway.extproc.framework.processor.ErrorFormatter`)."""

    __slots__ = ()

    async def on_request_headers(self, headers: Headers) -> Result:
        """Answers 404 for any request."""
        path = headers.path.partition("?")[0]
        raise ImmediateResponse.error(404, f"Invalid URL ({headers.method} {path})")


class Router:
    """Routing on the path with its query string stripped: exact matches first, then
    the longest matching prefix (``prefixes``), then ``fallback``. ``wrap`` wraps every
    processor it makes. ``errors`` writes the errors no processor wrote itself (an
    unknown path, a processor that raised): plain text unless the application gives
    its clients' format."""

    __slots__ = ("_fallback", "_path_metadata", "_prefixes", "_routes", "_wrap", "errors")

    def __init__(
        self,
        routes: Mapping[str, ProcessorFactory],
        *,
        prefixes: Mapping[str, ProcessorFactory] | None = None,
        fallback: ProcessorFactory = NotFoundProcessor,
        wrap: Wrap | None = None,
        errors: ErrorFormatter = plain_error,
        path_metadata: tuple[str, str] | None = None,
    ) -> None:
        #: A forwarded dynamic metadata field (namespace, key) that, when present, holds
        #: the path to route on instead of ``:path`` (for a filter chain where an earlier
        #: filter rewrote ``:path``).
        self._path_metadata = path_metadata
        self._routes = dict(routes)
        self._prefixes = sorted((prefixes or {}).items(), key=lambda kv: -len(kv[0]))
        self._fallback = fallback
        self._wrap = wrap
        self.errors = errors

    @property
    def paths(self) -> list[str]:
        return sorted(self._routes)

    def path_of(self, headers: Headers) -> str:
        """The path a request with these headers is routed on (see ``path_metadata``)."""
        if self._path_metadata is not None:
            namespace, key = self._path_metadata
            path = headers.metadata.get(namespace, {}).get(key)
            if isinstance(path, str) and path:
                return path
        return headers.path

    def create(self, path: str) -> Processor:
        """The processor for one request to ``path`` (query string ignored), wrapped."""
        query = path.find("?")
        if query != -1:
            path = path[:query]
        factory = self._routes.get(path)
        if factory is None:
            factory = self._fallback
            for prefix, candidate in self._prefixes:
                if path.startswith(prefix):
                    factory = candidate
                    break
        processor = factory()
        return self._wrap(processor) if self._wrap is not None else processor
