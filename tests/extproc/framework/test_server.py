"""The protocol rules the server owns, with small processors that each do one thing."""

from __future__ import annotations

import pytest

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
    Outcome,
    Processor,
    Result,
)
from aigateway.extproc.framework.router import Router
from aigateway.extproc.framework.server import ExternalProcessorServicer
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


def servicer_for(factory: object, path: str = "/p") -> ExternalProcessorServicer:
    return ExternalProcessorServicer(Router({path: factory}))  # type: ignore[dict-item]


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


async def test_unknown_path_is_an_openai_404() -> None:
    conv = Conversation(servicer_for(Processor))
    status, doc = immediate_json(await conv.send(request_headers("/v1/nope")))
    assert status == 404
    assert doc["error"]["message"] == "Invalid URL (POST /v1/nope)"
    assert doc["error"]["type"] == "invalid_request_error"
    await conv.close()


class ReplaceBody(Processor):
    async def on_request_body(self, body: bytes, end_of_stream: bool) -> Result:
        return Result(set_headers=(("x-a", "1"),), body=b"new body", clear_route_cache=True)

    async def on_response_body(self, body: bytes, end_of_stream: bool) -> Result:
        return Result(body=b"", clear_route_cache=True)


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
    assert not answer.clear_route_cache  # only in the request direction
    await conv.close()


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
    servicer = servicer_for(Failing)
    conv = Conversation(servicer)
    steps = [request_headers("/p"), request_body(b"{}"), response_headers(), response_body(b"{}")]
    for step in steps:
        answer = await conv.send(step)
        if answer.HasField("immediate_response"):
            break
    status, doc = immediate_json(answer)
    assert status == 500
    assert doc["error"]["type"] == "server_error"
    assert "req-1" in doc["error"]["message"]
    assert "secret" not in doc["error"]["message"]
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


async def test_immediate_response_carries_status_json_and_details() -> None:
    outcomes: list[Outcome] = []

    class R(Refuses):
        async def on_stream_end(self, outcome: Outcome) -> None:
            outcomes.append(outcome)

    conv = Conversation(servicer_for(R))
    await conv.send(request_headers("/p"))
    answer = await conv.send(request_body(b"{}"))
    status, doc = immediate_json(answer)
    assert status == 429
    assert doc == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "budget",
        }
    }
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
