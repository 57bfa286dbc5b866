"""The protocol rules the server owns, with small processors that each do one thing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import struct_pb2

from aigateway.extproc.framework import server
from aigateway.extproc.framework._protos.envoy.extensions.filters.http.ext_proc.v3 import (
    processing_mode_pb2,
)
from aigateway.extproc.framework._protos.envoy.service.ext_proc.v3 import (
    external_processor_pb2 as pb,
)
from aigateway.extproc.framework.processor import (
    CONTINUE,
    Headers,
    ImmediateResponse,
    LocalError,
    Outcome,
    Processor,
    Result,
)
from aigateway.extproc.framework.router import Router
from aigateway.extproc.framework.server import (
    ExternalProcessorServicer,
    LargeBodyTurns,
    ResultError,
    _set_metadata,
)
from tests.extproc.framework.fake_envoy import (
    Aborted,
    Conversation,
    headers_set,
    immediate_json,
    metadata,
    request_body,
    request_headers,
    response_body,
    response_headers,
)


class Recorder(Processor):
    """Continues everything and remembers what it saw."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def on_request_headers(self, headers: Headers) -> Result:
        self.log.append(("request_headers", headers.path, headers.get_all("x-multi")))
        return CONTINUE

    async def on_stream_end(self, outcome: Outcome) -> None:
        self.log.append(outcome)


def servicer_for(factory: object, path: str = "/p", **router: Any) -> ExternalProcessorServicer:
    return ExternalProcessorServicer(Router({path: factory}, **router))  # type: ignore[dict-item]


def json_errors(error: LocalError, path: str) -> tuple[str, bytes]:
    """An application's error format: what the router writes errors with."""
    doc = {"status": error.status, "message": error.message, "code": error.code, "path": path}
    return "application/json", json.dumps(doc).encode()


async def test_one_answer_per_message_of_the_matching_type() -> None:
    log: list[object] = []
    conv = Conversation(servicer_for(lambda: Recorder(log)))
    assert (await conv.send(request_headers("/p"))).HasField("request_headers")
    assert (await conv.send(request_body(b"{}"))).HasField("request_body")
    assert (await conv.send(response_headers())).HasField("response_headers")
    assert (await conv.send(response_body(b"{}"))).HasField("response_body")
    await conv.close()
    outcome = log[-1]
    assert isinstance(outcome, Outcome)
    assert outcome.succeeded and outcome.status == 200 and not outcome.cancelled


async def test_router_strips_the_query_and_keeps_repeated_headers() -> None:
    log: list[object] = []
    conv = Conversation(servicer_for(lambda: Recorder(log)))
    await conv.send(request_headers("/p?x=1", extra=[("x-multi", "a"), ("x-multi", "b")]))
    assert log[0] == ("request_headers", "/p?x=1", ["a", "b"])
    await conv.close()


class SeesMetadata(Processor):
    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def on_request_headers(self, headers: Headers) -> Result:
        self.log.append(dict(headers.metadata))
        return CONTINUE


async def test_forwarded_metadata_comes_with_the_request_headers_and_may_route() -> None:
    """Envoy's forwarded dynamic metadata reaches the processor; a router told to routes
    on a path in it, not on a ``:path`` an earlier filter rewrote."""
    log: list[object] = []
    conv = Conversation(servicer_for(lambda: SeesMetadata(log), path_metadata=("ns", "path")))
    message = request_headers("/rewritten")
    message.metadata_context.filter_metadata["ns"].update({"path": "/p", "n": [1, "a"]})
    assert (await conv.send(message)).HasField("request_headers")
    assert log == [{"ns": {"path": "/p", "n": [1.0, "a"]}}]
    await conv.close()
    # Without it (or without the field): ``:path``, and no metadata.
    conv = Conversation(servicer_for(lambda: SeesMetadata(log), path_metadata=("ns", "path")))
    assert (await conv.send(request_headers("/p"))).HasField("request_headers")
    assert log[-1] == {}
    await conv.close()


async def test_unknown_path_is_a_plain_404_unless_the_application_gives_its_format() -> None:
    conv = Conversation(servicer_for(Processor))
    reply = (await conv.send(request_headers("/v1/nope"))).immediate_response
    assert reply.status.code == 404
    assert reply.body == b"Invalid URL (POST /v1/nope)"
    content_type = pb.CommonResponse(header_mutation=reply.headers)
    assert headers_set(content_type) == {"content-type": "text/plain; charset=utf-8"}
    await conv.close()

    conv = Conversation(servicer_for(Processor, errors=json_errors))
    status, doc = immediate_json(await conv.send(request_headers("/v1/nope?x=1")))
    assert (status, doc) == (
        404,
        {
            "status": 404,
            "message": "Invalid URL (POST /v1/nope)",
            "code": None,
            "path": "/v1/nope?x=1",
        },
    )
    await conv.close()


class ReplaceBody(Processor):
    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return Result(set_headers=(("x-a", "1"),), body=b"new body", clear_route_cache=True)

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        return Result(body=b"")


async def test_body_replacement_sets_content_length_and_raw_values() -> None:
    conv = Conversation(servicer_for(ReplaceBody))
    await conv.send(request_headers("/p"))
    answer = (await conv.send(request_body(b"old"))).request_body.response
    assert answer.body_mutation.body == b"new body"
    assert headers_set(answer) == {"x-a": "1", "content-length": "8"}
    assert all(not o.header.value for o in answer.header_mutation.set_headers)
    assert answer.clear_route_cache
    await conv.send(response_headers())
    answer = (await conv.send(response_body(b"old"))).response_body.response
    assert answer.body_mutation.clear_body
    assert headers_set(answer) == {"content-length": "0"}
    await conv.close()


# -- every Result field reaches Envoy where Envoy honours it, and is an error elsewhere --

PHASES = ("request_headers", "request_body", "response_headers", "response_body")
METADATA = {"ns": {"k": "v"}}

#: Each Result field, the phases where Envoy honours it, and the result that sets it.
HONOURED: dict[str, tuple[tuple[str, ...], Result]] = {
    "set_headers": (PHASES, Result(set_headers=(("x-set", "1"),))),
    "remove_headers": (PHASES, Result(remove_headers=("x-gone",))),
    "body": (PHASES, Result(body=b"new")),
    "clear_route_cache": (PHASES[:2], Result(clear_route_cache=True)),
    "stream_response_body": (("response_headers",), Result(stream_response_body=True)),
    "dynamic_metadata": (PHASES, Result(dynamic_metadata=METADATA)),
    "end_of_response": (("response_body",), Result(end_of_response=True)),
}


def returning(phase: str, result: Result, log: list[Outcome]) -> type[Processor]:
    """A processor that answers ``result`` in ``phase`` and continues elsewhere."""

    class Returns(Processor):
        async def on_request_headers(self, headers: Headers) -> Result:
            return result if phase == "request_headers" else CONTINUE

        async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
            return result if phase == "request_body" else CONTINUE

        async def on_response_headers(self, headers: Headers) -> Result:
            return result if phase == "response_headers" else CONTINUE

        async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
            return result if phase == "response_body" else CONTINUE

        async def on_stream_end(self, outcome: Outcome) -> None:
            log.append(outcome)

    return Returns


def test_the_table_covers_every_result_field() -> None:
    assert set(HONOURED) == {f.name for f in dataclasses.fields(Result)}


@pytest.mark.parametrize(
    ("field", "phase"),
    [(field, phase) for field, (phases, _) in HONOURED.items() for phase in phases],
)
async def test_each_result_field_reaches_envoy_in_every_phase_that_honours_it(
    field: str, phase: str
) -> None:
    outcomes: list[Outcome] = []
    conv = Conversation(servicer_for(returning(phase, HONOURED[field][1], outcomes)))
    steps = {
        "request_headers": request_headers("/p"),
        "request_body": request_body(b"{}"),
        "response_headers": response_headers(),
        # Not the last chunk: only the result can end the response here.
        "response_body": response_body(b"{}", end_of_stream=False),
    }
    answers = {name: await conv.send(step) for name, step in steps.items()}
    await conv.cancel()
    answer = answers[phase]
    common = getattr(answer, phase).response
    if field == "set_headers":
        assert headers_set(common)["x-set"] == "1"
    elif field == "remove_headers":
        assert list(common.header_mutation.remove_headers) == ["x-gone"]
    elif field == "body":
        assert common.body_mutation.body == b"new"
        assert headers_set(common) == {"content-length": "3"}
        replace = pb.CommonResponse.CONTINUE_AND_REPLACE
        assert (common.status == replace) is phase.endswith("headers")
    elif field == "clear_route_cache":
        assert common.clear_route_cache
    elif field == "stream_response_body":
        assert (
            answer.mode_override.response_body_mode == processing_mode_pb2.ProcessingMode.STREAMED
        )
        assert "content-length" in common.header_mutation.remove_headers
    elif field == "dynamic_metadata":
        assert metadata(answer, "ns") == {"k": "v"}
    else:  # end_of_response: the response is complete, a hang-up after it is no cancel
        assert outcomes[0].response_complete and not outcomes[0].cancelled


@pytest.mark.parametrize(
    ("phase", "result"),
    [
        *[(p, Result(clear_route_cache=True)) for p in PHASES[2:]],
        *[(p, Result(stream_response_body=True)) for p in PHASES if p != "response_headers"],
        *[(p, Result(end_of_response=True)) for p in PHASES[:3]],
        ("response_headers", Result(body=b"x", stream_response_body=True)),
    ],
)
async def test_a_field_envoy_would_not_honour_is_an_error_not_silence(
    phase: str, result: Result
) -> None:
    outcomes: list[Outcome] = []
    conv = Conversation(servicer_for(returning(phase, result, outcomes)))
    steps = [request_headers("/p"), request_body(b"{}"), response_headers(), response_body(b"{}")]
    for step in steps[: PHASES.index(phase) + 1]:
        answer = await conv.send(step)
    assert answer.WhichOneof("response") == "immediate_response"
    assert answer.immediate_response.status.code == 500
    await conv.close()
    assert isinstance(outcomes[0].error, ResultError)


@pytest.mark.parametrize(
    "result", [Result(set_headers=(("x", "1"),)), Result(remove_headers=("x",))]
)
async def test_a_streamed_chunk_cannot_change_headers_the_client_has(result: Result) -> None:
    outcomes: list[Outcome] = []

    class Streamed(Processor):
        async def on_response_headers(self, headers: Headers) -> Result:
            return Result(stream_response_body=True)

        async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
            return result

        async def on_stream_end(self, outcome: Outcome) -> None:
            outcomes.append(outcome)

    conv = Conversation(servicer_for(Streamed))
    await conv.send(request_headers("/p"))
    await conv.send(request_body(b"{}"))
    await conv.send(response_headers())
    await conv.context.inbox.put(response_body(b"chunk", end_of_stream=False))
    with pytest.raises(Aborted):
        await conv.task
    assert isinstance(outcomes[0].error, ResultError)


class Streams(Processor):
    async def on_response_headers(self, headers: Headers) -> Result:
        return Result(stream_response_body=True)

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        if body == b"boom":
            raise RuntimeError("failed mid-stream")
        return Result(
            body=body.upper(),
            dynamic_metadata={"aigateway": {"n": 1}} if end_of_stream else None,
        )


async def test_streamed_response_uses_mode_override_and_drops_content_length() -> None:
    conv = Conversation(servicer_for(Streams))
    await conv.send(request_headers("/p"))
    await conv.send(request_body(b"{}"))
    answer = await conv.send(response_headers(extra=[("content-length", "10")]))
    assert answer.mode_override.response_body_mode == processing_mode_pb2.ProcessingMode.STREAMED
    assert "content-length" in answer.response_headers.response.header_mutation.remove_headers
    chunk = (await conv.send(response_body(b"ab", end_of_stream=False))).response_body.response
    assert chunk.body_mutation.body == b"AB"
    assert not headers_set(chunk)  # no content-length on streamed chunks
    last = await conv.send(response_body(b"cd", end_of_stream=True))
    assert metadata(last) == {"n": 1}
    await conv.close()


async def test_exception_after_commit_aborts_the_stream() -> None:
    outcomes: list[Outcome] = []

    class Failing(Streams):
        async def on_stream_end(self, outcome: Outcome) -> None:
            outcomes.append(outcome)

    conv = Conversation(servicer_for(Failing))
    await conv.send(request_headers("/p"))
    await conv.send(request_body(b"{}"))
    await conv.send(response_headers())
    await conv.context.inbox.put(response_body(b"boom", end_of_stream=False))
    with pytest.raises(Aborted):
        await conv.task
    assert len(outcomes) == 1
    assert isinstance(outcomes[0].error, RuntimeError)
    assert not outcomes[0].succeeded


class FailsIn(Processor):
    phase = ""

    async def on_request_headers(self, headers: Headers) -> Result:
        if self.phase == "request_headers":
            raise RuntimeError("secret-key-in-message")
        return CONTINUE

    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        if self.phase == "request_body":
            raise RuntimeError("secret-key-in-message")
        return CONTINUE

    async def on_response_headers(self, headers: Headers) -> Result:
        if self.phase == "response_headers":
            raise RuntimeError("secret-key-in-message")
        return CONTINUE

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        if self.phase == "response_body":
            raise RuntimeError("secret-key-in-message")
        return CONTINUE


@pytest.mark.parametrize(
    "phase", ["request_headers", "request_body", "response_headers", "response_body"]
)
async def test_exception_before_commit_is_a_500_json_and_the_server_keeps_serving(
    phase: str,
) -> None:
    class Failing(FailsIn):
        pass

    Failing.phase = phase
    servicer = servicer_for(Failing, errors=json_errors)
    conv = Conversation(servicer)
    steps = [request_headers("/p"), request_body(b"{}"), response_headers(), response_body(b"{}")]
    for step in steps:
        answer = await conv.send(step)
        if answer.HasField("immediate_response"):
            break
    status, doc = immediate_json(answer)
    assert status == 500
    assert doc["code"] == "internal_error"
    assert "req-1" in doc["message"]
    assert "secret" not in doc["message"]
    await conv.close()
    # The next stream on the same servicer works.
    log: list[object] = []
    servicer.router = Router({"/p": lambda: Recorder(log)})
    conv = Conversation(servicer)
    assert (await conv.send(request_headers("/p"))).HasField("request_headers")
    await conv.close()


class Refuses(Processor):
    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        raise ImmediateResponse.error(429, "slow down", code="budget")


async def test_an_error_reply_is_written_in_the_application_format_with_its_details() -> None:
    outcomes: list[Outcome] = []

    class R(Refuses):
        async def on_stream_end(self, outcome: Outcome) -> None:
            outcomes.append(outcome)

    conv = Conversation(servicer_for(R, errors=json_errors))
    await conv.send(request_headers("/p"))
    answer = await conv.send(request_body(b"{}"))
    status, doc = immediate_json(answer)
    assert status == 429
    assert doc == {"status": 429, "message": "slow down", "code": "budget", "path": "/p"}
    assert answer.immediate_response.details == "aigateway_budget"
    assert headers_set(pb.CommonResponse(header_mutation=answer.immediate_response.headers)) == {
        "content-type": "application/json"
    }
    await conv.close()
    assert outcomes[0].local_reply and outcomes[0].status == 429 and not outcomes[0].succeeded


async def test_cancelled_stream_ends_once_as_cancelled() -> None:
    log: list[object] = []
    conv = Conversation(servicer_for(lambda: Recorder(log)))
    await conv.send(request_headers("/p"))
    await conv.send(request_body(b"{}"))
    await conv.send(response_headers(content_type="text/event-stream"))
    await conv.cancel()
    outcomes = [o for o in log if isinstance(o, Outcome)]
    assert len(outcomes) == 1
    assert outcomes[0].cancelled and not outcomes[0].response_complete


async def test_end_of_stream_at_response_headers_completes_the_response() -> None:
    log: list[object] = []
    conv = Conversation(servicer_for(lambda: Recorder(log)))
    await conv.send(request_headers("/p", end_of_stream=True))
    await conv.send(response_headers(204, end_of_stream=True))
    await conv.close()
    outcome = log[-1]
    assert isinstance(outcome, Outcome) and outcome.succeeded


@pytest.mark.parametrize("buffered", [True, False])
async def test_a_refusal_of_a_request_with_a_body_is_answered_once_the_body_is_in(
    buffered: bool,
) -> None:
    """A reply before the upload ends reaches an HTTP/2 client as a reset stream; when
    Envoy says the body comes whole, the refusal waits for it. Without a body, or with
    no body coming, it is answered at once."""
    conv = Conversation(servicer_for(Processor, errors=json_errors))
    first = await conv.send(request_headers("/v1/nope", buffered_body=buffered))
    if buffered:
        assert first.HasField("request_headers")  # continue: send the body
        first = await conv.send(request_body(b"{}"))
    assert immediate_json(first)[0] == 404
    await conv.close()

    conv = Conversation(servicer_for(Processor))
    no_body = request_headers("/v1/nope", buffered_body=buffered, end_of_stream=True)
    assert (await conv.send(no_body)).immediate_response.status.code == 404
    await conv.close()


async def test_a_stream_that_starts_with_envoy_s_reply_goes_to_the_fallback() -> None:
    """Envoy's reply to a request it refused before any filter saw it (no Host, say):
    its headers come first, with no request before them."""
    log: list[object] = []
    conv = Conversation(ExternalProcessorServicer(Router({}, fallback=lambda: Recorder(log))))
    assert (await conv.send(response_headers(400))).HasField("response_headers")
    assert (await conv.send(response_body(b"{}"))).HasField("response_body")
    await conv.close()
    assert log == [Outcome(response_complete=True, status=400)]


async def test_router_prefixes_pick_the_longest_match() -> None:
    made: list[str] = []

    def factory(name: str) -> object:
        return lambda: made.append(name) or Processor()

    router = Router(
        {"/a": factory("exact")},  # type: ignore[dict-item]
        prefixes={"/a/": factory("short"), "/a/b/": factory("long")},  # type: ignore[dict-item]
    )
    for path in ("/a?x", "/a/z", "/a/b/c", "/zzz"):
        router.create(path)
    assert made == ["exact", "short", "long"]


class ReplacesAtResponseHeaders(Processor):
    async def on_response_headers(self, headers: Headers) -> Result:
        return Result(set_headers=(("content-type", "application/json"),), body=b'{"error":{}}')


async def test_body_given_at_response_headers_is_a_continue_and_replace() -> None:
    conv = Conversation(servicer_for(ReplacesAtResponseHeaders))
    await conv.send(request_headers("/p"))
    await conv.send(request_body(b"{}"))
    answer = (await conv.send(response_headers(500, end_of_stream=True))).response_headers
    assert answer.response.status == pb.CommonResponse.CONTINUE_AND_REPLACE
    assert answer.response.body_mutation.body == b'{"error":{}}'
    assert headers_set(answer.response)["content-length"] == "12"
    await conv.close()


def test_metadata_struct_is_what_struct_update_writes() -> None:
    """The server writes dynamic metadata field by field (it is on every answer that
    carries facts); the result is the Struct protobuf's own ``update`` of the same dict,
    for every JSON type and an empty namespace."""
    metadata = {
        "aigateway": {
            "backend": "static",
            "input_tokens": 27,
            "total_latency_ms": 1.234,
            "streamed": True,
            "cached": False,
            "error": None,
            "finish_reasons": ["stop", "length"],
            "nested": {"a": [1, "b", None, {"c": True}]},
        },
        "other": {},
    }
    expected = struct_pb2.Struct()
    expected.update(metadata)
    written = struct_pb2.Struct()
    _set_metadata(written, metadata)
    assert written == expected
    assert written.fields["other"].WhichOneof("kind") == "struct_value"


async def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_large_bodies_take_turns_with_what_arrives_meanwhile() -> None:
    """Each large body starts only after the loop has run what became ready during the
    previous one: a message that arrives while one is parsed waits for that one alone,
    not for every large body that came with it."""
    turns = LargeBodyTurns()
    order: list[str] = []
    loop = asyncio.get_running_loop()

    async def large(i: int) -> None:
        await turns.wait()
        order.append(f"large {i}")
        loop.call_soon(order.append, f"small after {i}")  # arrives while it is parsed

    await asyncio.gather(*(large(i) for i in range(3)))
    assert order == [
        "large 0",
        "small after 0",
        "large 1",
        "small after 1",
        "large 2",
        "small after 2",
    ]


async def test_freed_memory_goes_back_once_the_last_large_body_stream_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trims: list[int] = []

    def trim() -> bool:
        trims.append(1)
        return True

    monkeypatch.setattr(server, "TRIM_DELAY_SECONDS", 0)
    monkeypatch.setattr(server, "release_freed_memory", trim)
    servicer = servicer_for(lambda: Recorder([]))
    large = request_body(b"x" * server.LARGE_BODY_BYTES)

    async def stream(body: pb.ProcessingRequest) -> Conversation:
        conv = Conversation(servicer)
        await conv.send(request_headers("/p"))
        await conv.send(body)
        return conv

    small = await stream(request_body(b"{}"))
    await small.close()
    for burst in (1, 2):
        first, second = await stream(large), await stream(large)
        await first.close()
        await second.close()
        await wait_for(lambda b=burst: len(trims) >= b)
        assert len(trims) == burst
