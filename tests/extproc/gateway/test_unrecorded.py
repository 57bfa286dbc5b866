"""Envoy's log of the requests no processor recorded, read (docs/architecture.md,
"Requests no processor recorded"), and where the bootstrap sends it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from aigateway.extproc.framework._protos.envoy.data.accesslog.v3 import accesslog_pb2
from aigateway.extproc.framework._protos.envoy.service.accesslog.v3 import als_pb2
from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.app import counted_path
from aigateway.extproc.gateway.attempts import CLIENT_HEADERS_NAMESPACE, CLIENT_NAMESPACE
from aigateway.extproc.gateway.config import load_config
from aigateway.extproc.gateway.unrecorded import (
    LOST_DETAILS,
    UNAVAILABLE_DETAILS,
    UNRECORDED_LOG_NAME,
    UnrecordedLog,
)
from aigateway.extproc.ops.envoy_bootstrap import UNRECORDED_CLUSTER, EnvoyOptions, build_bootstrap
from aigateway.instrumentation.facts import UnrecordedRequest

LOG = UnrecordedLog(lambda _request: None, counted_path)
REFUSED = (
    "ext_proc_error_gRPC_error_14{upstream_connect_error_or_disconnect/reset_before_headers."
    "_retried_and_the_latest_reset_reason:_remote_connection_failure{...}}"
)
KILLED = LOST_DETAILS + "}}"


def entry(
    details: str,
    facts: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/v1/chat/completions",
) -> Any:
    log = accesslog_pb2.HTTPAccessLogEntry()
    log.response.response_code_details = details
    log.request.path = path
    log.common_properties.duration.FromMilliseconds(1500)
    if facts is not None:
        json_format.ParseDict(facts, log.common_properties.metadata.filter_metadata["aigateway"])
    for name, value in (headers or {}).items():
        log.request.request_headers[name] = value
    return log


@pytest.mark.parametrize("details", [REFUSED, "ext_proc_error_gRPC_error_14{no_healthy_upstream}"])
def test_a_request_that_never_reached_a_processor_is_unknown(details: str) -> None:
    assert LOG.request(entry(details)) == UnrecordedRequest(
        facts={}, headers=(), duration=1.5, cause="processor_unavailable"
    )


def test_a_request_whose_processor_died_keeps_what_it_had_published() -> None:
    facts = {"backend": "b", "model": "m", "input_tokens": 12}
    got = LOG.request(entry(KILLED, facts, {"x-tenant-id": "acme"}))
    assert got == UnrecordedRequest(
        facts={"backend": "b", "model": "m", "input_tokens": 12.0},
        headers=(("x-tenant-id", "acme"),),
        duration=1.5,
        cause="processor_lost",
    )


@pytest.mark.parametrize(
    "details",
    [
        "via_upstream",
        "downstream_remote_disconnect",
        # The processor is alive: it records the request when its stream ends.
        "ext_proc_error_per-message_timeout_exceeded",
        "ext_proc_error_gRPC_error_13{upstream_reset_after_response_started{remote_reset}}",
        # Its server cancelling the calls a drain did not finish.
        "ext_proc_error_gRPC_error_14{Cancelling_all_calls{via_upstream}}",
        "ext_proc_error_gRPC_error_2{Unexpected_error}",
        # A processor that raised after the response started ends its stream so.
        "ext_proc_error_gRPC_error_13{aigateway:_processor_failed}",
        "aigateway_model_not_found",
    ],
)
def test_a_request_a_processor_records_is_not_taken(details: str) -> None:
    assert LOG.request(entry(details, {"backend": "b"})) is None


@pytest.mark.parametrize(
    ("path", "original"),
    [
        ("/v1/models", None),
        ("/v1/models/gpt-4o-mini", None),
        ("/v1/messages/count_tokens?beta=true", None),
        ("/v1/messages/count_tokens", "/v1/messages/count_tokens"),  # not rewritten
        ("/rewritten/by/the/processor", "/v1/messages/count_tokens"),
    ],
)
def test_a_request_to_a_path_never_counted_is_not_taken(path: str, original: str | None) -> None:
    headers = {"x-ai-gateway-original-path": original} if original else {}
    assert LOG.request(entry(KILLED, headers=headers, path=path)) is None


def test_the_clients_path_decides_and_is_no_header_label() -> None:
    headers = {"x-ai-gateway-original-path": "/v1/chat/completions", "x-tenant-id": "acme"}
    got = LOG.request(entry(KILLED, headers=headers, path="/v1/models"))
    assert got is not None and got.headers == (("x-tenant-id", "acme"),)


def test_a_model_with_several_backends_has_the_clients_path_and_headers() -> None:
    """Its attempts rewrote the path and removed the label header before the backend;
    the client's are in the metadata the listener's processor published."""
    killed = entry(KILLED, headers={"x-team": "set-by-an-attempt"}, path="/model/x/converse")
    published = killed.common_properties.metadata.filter_metadata
    published[CLIENT_NAMESPACE].update({"path": "/v1/chat/completions"})
    published[CLIENT_HEADERS_NAMESPACE].update({"x-tenant-id": "acme", "x-team": "red"})
    got = LOG.request(killed)
    assert got is not None and sorted(got.headers) == [("x-team", "red"), ("x-tenant-id", "acme")]
    published[CLIENT_NAMESPACE].update({"path": "/v1/models"})
    assert LOG.request(killed) is None


def test_a_request_its_processor_recorded_before_it_died_is_not_taken() -> None:
    # Its answer that completed the response carried the recorded fact.
    assert LOG.request(entry(KILLED, {"model": "m", "total_latency_ms": 9.5})) is None


async def test_only_entries_of_its_own_log_are_recorded() -> None:
    recorded: list[UnrecordedRequest] = []
    log = UnrecordedLog(recorded.append)

    def stream(name: str) -> list[Any]:
        first = als_pb2.StreamAccessLogsMessage()
        first.identifier.log_name = name
        first.http_logs.log_entry.append(entry(REFUSED))
        then = als_pb2.StreamAccessLogsMessage()
        then.http_logs.log_entry.extend([entry(KILLED), entry("via_upstream")])
        return [first, then]

    async def messages(items: list[Any]) -> Any:
        for item in items:
            yield item

    await log.StreamAccessLogs(messages(stream("aigateway-attempts")), None)
    assert recorded == []
    await log.StreamAccessLogs(messages(stream(UNRECORDED_LOG_NAME)), None)
    assert [r.cause for r in recorded] == ["processor_unavailable", "processor_lost"]


CONFIG = """
backends:
  - {name: b, schema: openai, endpoint: "http://127.0.0.1:1"}
models:
  - {name: m, backend: b}
metrics:
  labels_from_headers:
    - {header: x-tenant-id, label: tenant, values: [acme]}
"""


def bootstrap(tmp_path: Path, unrecorded: tuple[Address, ...]) -> dict[str, Any]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    options = EnvoyOptions(
        listen=Address.parse("127.0.0.1:10000"),
        extproc=[Address.parse("127.0.0.1:1063")],
        admin=Address.parse("127.0.0.1:9901"),
        unrecorded=unrecorded,
    )
    return build_bootstrap(load_config(path), options)


def _hcm(doc: dict[str, Any]) -> dict[str, Any]:
    (listener,) = doc["static_resources"]["listeners"]
    hcm: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm


def test_the_log_goes_to_the_counters_with_the_header_labels(tmp_path: Path) -> None:
    doc = bootstrap(tmp_path, (Address.parse("127.0.0.1:1064"),))
    grpc_log = next(
        log for log in _hcm(doc)["access_log"] if log["name"] == "envoy.access_loggers.http_grpc"
    )
    config = grpc_log["typed_config"]
    assert config["common_config"]["log_name"] == UNRECORDED_LOG_NAME
    assert config["common_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == (
        UNRECORDED_CLUSTER
    )
    assert config["additional_request_headers_to_log"] == [
        "x-ai-gateway-original-path",
        "x-tenant-id",
    ]
    expression = grpc_log["filter"]["extension_filter"]["typed_config"]["expression"]
    assert all(details in expression for details in (*UNAVAILABLE_DETAILS, LOST_DETAILS))
    assert "total_latency_ms" in expression
    cluster = next(
        c for c in doc["static_resources"]["clusters"] if c["name"] == UNRECORDED_CLUSTER
    )
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == 1064


def test_without_a_counter_nothing_is_logged_over_grpc(tmp_path: Path) -> None:
    doc = bootstrap(tmp_path, ())
    text = yaml.safe_dump(doc)
    assert "http_grpc" not in text and UNRECORDED_CLUSTER not in text
