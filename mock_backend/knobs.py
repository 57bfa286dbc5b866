"""Per-request knobs: request headers that steer one mock response.

They are plain request headers so they pass through Envoy and the gateway untouched.

================================  =======================================================
header                            effect
================================  =======================================================
``x-mock-output-tokens: N``       reply with N words / report N output tokens (default 8)
``x-mock-status: S``              answer status S with the provider's error body (S < 400:
                                  no effect)
``x-mock-status-path: P``         ``x-mock-status`` only on request paths starting with P
                                  (one backend of a model fails: ``/v1/chat`` fails OpenAI
                                  and answers Anthropic's ``/v1/messages``)
``x-mock-error-type: T``          provider error type for ``x-mock-status`` and for the
                                  ``exception`` fault (OpenAI ``error.type``, Bedrock
                                  exception name, Anthropic ``error.type``)
``x-mock-error-echo: NAME``       the ``x-mock-status`` error message repeats the value of
                                  request header NAME (a provider echoing a credential)
``x-mock-ttft-ms: MS``            wait MS before the first byte of the response
``x-mock-itl-ms: MS``             wait MS before every streamed token chunk but the first
``x-mock-tool-call: NAME``        answer with a call to tool NAME; ignored when the request
                                  has no tools, 400 when its tools lack NAME
``x-mock-cached-tokens: N``       report N of the prompt tokens as cache reads
``x-mock-cache-write-tokens: N``  report N of the prompt tokens as cache writes
                                  (Anthropic ``cache_creation_input_tokens``, Bedrock
                                  ``cacheWriteInputTokens``, OpenAI
                                  ``cache_write_tokens``)
``x-mock-reasoning-tokens: N``    OpenAI: add N reasoning tokens to completion usage;
                                  Anthropic and Bedrock, when the request enables
                                  thinking: think N words (default 4, see
                                  :mod:`.reasoning`), counted as output tokens
``x-mock-fault: F[, F...]``       faults, see :class:`Fault`
``x-mock-fault-after: N``         token chunks sent before a stream fault fires (default 2)
``x-mock-tail-ms: MS``            streams: wait MS after the last event before ending the
                                  body (real upstreams send the end of a body late)
``x-mock-hold-end: KEY``          streams: after the last event, hold the end of the body
                                  until ``POST /_mock/release/KEY`` (or the client leaves)
``x-mock-split: N``               streams: write every event in pieces of at most N bytes
                                  (splits anywhere: inside lines, CRLF pairs, characters)
``x-mock-crlf: 1``                SSE streams: end lines with CRLF instead of LF
``x-mock-keepalive: 1``           streams: a keep-alive before every event (OpenAI: an SSE
                                  comment line; Anthropic: a ``ping`` event)
``x-mock-usage-so-far: 1``        Gemini API streams: every response has the usage so far,
                                  the candidates' count growing by one a word, as
                                  Google's do (the default keeps the prompt's until the
                                  last, so that a cut stream's count is not timing's)
================================  =======================================================
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import MockError

__all__ = [
    "DEFAULT_KNOBS",
    "DEFAULT_OUTPUT_TOKENS",
    "MAX_OUTPUT_TOKENS",
    "Fault",
    "Knobs",
    "parse_knobs",
]

DEFAULT_OUTPUT_TOKENS = 8
DEFAULT_FAULT_AFTER = 2
MAX_OUTPUT_TOKENS = 1_000_000
_MAX_DELAY_MS = 600_000

OUTPUT_TOKENS = "x-mock-output-tokens"
STATUS = "x-mock-status"
STATUS_PATH = "x-mock-status-path"
ERROR_TYPE = "x-mock-error-type"
ERROR_ECHO = "x-mock-error-echo"
TTFT_MS = "x-mock-ttft-ms"
ITL_MS = "x-mock-itl-ms"
TOOL_CALL = "x-mock-tool-call"
CACHED_TOKENS = "x-mock-cached-tokens"
CACHE_WRITE_TOKENS = "x-mock-cache-write-tokens"
REASONING_TOKENS = "x-mock-reasoning-tokens"
FAULT = "x-mock-fault"
FAULT_AFTER = "x-mock-fault-after"
TAIL_MS = "x-mock-tail-ms"
HOLD_END = "x-mock-hold-end"
SPLIT = "x-mock-split"
CRLF = "x-mock-crlf"
KEEPALIVE = "x-mock-keepalive"
USAGE_SO_FAR = "x-mock-usage-so-far"

_ALL_HEADERS = (
    OUTPUT_TOKENS,
    STATUS,
    STATUS_PATH,
    ERROR_TYPE,
    ERROR_ECHO,
    TTFT_MS,
    ITL_MS,
    TOOL_CALL,
    CACHED_TOKENS,
    CACHE_WRITE_TOKENS,
    REASONING_TOKENS,
    FAULT,
    FAULT_AFTER,
    TAIL_MS,
    HOLD_END,
    SPLIT,
    CRLF,
    KEEPALIVE,
    USAGE_SO_FAR,
)


class Fault(enum.StrEnum):
    """Values of ``x-mock-fault`` (comma-separated, combinable).

    Stream faults fire after ``x-mock-fault-after`` token chunks (default 2; fewer if
    the reply is shorter, then just before the closing events).
    """

    #: abort the TCP connection (RST) mid-body; non-streamed: after half the body.
    RESET = "reset"
    #: end the body cleanly without the final event(s) (``[DONE]``, ``message_stop``,
    #: ``messageStop`` + ``metadata``, Gemini's last chunk with ``finishReason``,
    #: ``response.completed``); with
    #: ``x-mock-fault-after``, right at that point.
    #: Non-streamed: a body cut in half with a matching content-length.
    TRUNCATE = "truncate"
    #: insert one event whose data is not JSON (Bedrock: a frame with a non-JSON
    #: payload), then carry on. Non-streamed: like ``truncate``.
    BAD_JSON = "bad-json"
    #: Bedrock streams only: insert one frame whose message CRC is wrong, then carry on.
    BAD_CRC = "bad-crc"
    #: streams only: end with the provider's in-stream error event (Bedrock exception
    #: frame, Anthropic ``event: error``, OpenAI and Gemini ``data: {"error": ...}``,
    #: OpenAI Responses ``event: error``).
    EXCEPTION = "exception"
    #: gzip the body (``content-encoding: gzip``); streams are flushed per event.
    #: ``x-mock-status`` errors come with no body at all (an upstream or proxy that
    #: answers a bare status).
    EMPTY = "empty"
    GZIP = "gzip"


@dataclass(frozen=True, slots=True)
class Knobs:
    """The parsed knobs of one request; :data:`DEFAULT_KNOBS` when none are set."""

    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    status: int | None = None
    #: ``status`` only on request paths that start with it.
    status_path: str = ""
    error_type: str | None = None
    #: A request header whose value the error message repeats, as careless providers
    #: do with API keys ("Incorrect API key provided: sk-...").
    error_echo: str | None = None
    ttft_s: float = 0.0
    itl_s: float = 0.0
    tool_call: str | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    faults: frozenset[Fault] = frozenset()
    fault_after: int | None = None
    tail_s: float = 0.0
    hold_end: str | None = None
    split: int | None = None
    crlf: bool = False
    keepalive: bool = False
    usage_so_far: bool = False

    @property
    def stream_fault_after(self) -> int:
        """Token chunks to send before a stream fault fires."""
        return DEFAULT_FAULT_AFTER if self.fault_after is None else self.fault_after


DEFAULT_KNOBS = Knobs()


def parse_knobs(headers: Mapping[str, str]) -> Knobs:
    """Read the knobs from request headers (case-insensitive mapping).

    Raises :class:`MockError` (400) when a knob has a bad value, so test mistakes
    surface instead of being silently ignored.
    """
    if not any(name in headers for name in _ALL_HEADERS):
        return DEFAULT_KNOBS
    status = _int(headers, STATUS, 100, 599)
    faults: set[Fault] = set()
    for item in headers.get(FAULT, "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            faults.add(Fault(item))
        except ValueError:
            choices = ", ".join(f.value for f in Fault)
            raise MockError(400, f"{FAULT}: unknown fault {item!r}; use {choices}") from None
    return Knobs(
        output_tokens=_int_or(headers, OUTPUT_TOKENS, DEFAULT_OUTPUT_TOKENS, 0, MAX_OUTPUT_TOKENS),
        status=status if status is not None and status >= 400 else None,
        status_path=headers.get(STATUS_PATH, "").strip(),
        error_type=headers.get(ERROR_TYPE) or None,
        error_echo=headers.get(ERROR_ECHO, "").strip().lower() or None,
        ttft_s=_int_or(headers, TTFT_MS, 0, 0, _MAX_DELAY_MS) / 1000,
        itl_s=_int_or(headers, ITL_MS, 0, 0, _MAX_DELAY_MS) / 1000,
        tool_call=headers.get(TOOL_CALL, "").strip() or None,
        cached_tokens=_int_or(headers, CACHED_TOKENS, 0, 0, MAX_OUTPUT_TOKENS),
        cache_write_tokens=_int_or(headers, CACHE_WRITE_TOKENS, 0, 0, MAX_OUTPUT_TOKENS),
        reasoning_tokens=_int_or(headers, REASONING_TOKENS, 0, 0, MAX_OUTPUT_TOKENS),
        faults=frozenset(faults),
        fault_after=_int(headers, FAULT_AFTER, 0, MAX_OUTPUT_TOKENS),
        tail_s=_int_or(headers, TAIL_MS, 0, 0, _MAX_DELAY_MS) / 1000,
        hold_end=headers.get(HOLD_END, "").strip() or None,
        split=_int(headers, SPLIT, 1, MAX_OUTPUT_TOKENS),
        crlf=_flag(headers, CRLF),
        keepalive=_flag(headers, KEEPALIVE),
        usage_so_far=_flag(headers, USAGE_SO_FAR),
    )


def _flag(headers: Mapping[str, str], name: str) -> bool:
    raw = headers.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value not in ("0", "1", "true", "false"):
        raise MockError(400, f"{name}: expected 1 or 0, got {raw!r}")
    return value in ("1", "true")


def _int(headers: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise MockError(400, f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise MockError(400, f"{name}: {value} is outside [{low}, {high}]")
    return value


def _int_or(headers: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _int(headers, name, low, high)
    return default if value is None else value
