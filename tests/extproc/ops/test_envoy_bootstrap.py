"""The bootstrap's routes and clusters for ``serve --workers``' large-body worker
(docs/reliability.md, "Large bodies"): a content-length of ``LARGE_BODY_BYTES`` or more,
or none on a method with a body, takes the listener's ext_proc stream (and, for a model
with several backends, each attempt's) to the large-body cluster; without large-body
workers nothing of it is generated."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.framework.server import CHAIN_METADATA_KEY, LARGE_BODY_BYTES
from aigateway.extproc.gateway.attempts import ATTEMPT_CHAIN
from aigateway.extproc.gateway.config import load_config
from aigateway.extproc.ops.envoy_bootstrap import (
    EXTPROC_CLUSTER,
    LARGE_BODY_CLUSTER,
    EnvoyOptions,
    at_least_regex,
    build_bootstrap,
)

CONFIG = """
backends:
  - {name: a, schema: openai, endpoint: "http://127.0.0.1:8000"}
  - {name: b, schema: openai, endpoint: "http://127.0.0.1:8001"}
models:
  - {name: one, backend: a}
  - name: two
    backends: [{backend: a}, {backend: b}]
"""
WORKERS = [Address.parse("127.0.0.1:1063"), Address.parse("127.0.0.1:1064")]
LARGE = (Address.parse("127.0.0.1:1066"),)


def bootstrap(tmp_path: Path, large_body: tuple[Address, ...]) -> dict[str, Any]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    options = EnvoyOptions(
        listen=Address.parse("127.0.0.1:10000"),
        extproc=WORKERS,
        admin=Address.parse("127.0.0.1:9901"),
        large_body=large_body,
    )
    return build_bootstrap(load_config(path), options)


def routes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    found: list[dict[str, Any]] = hcm["route_config"]["virtual_hosts"][0]["routes"]
    return found


def clusters(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["static_resources"]["clusters"]}


@pytest.mark.parametrize("threshold", [0, 1, 7, 9, 10, 99, 100, 909, 1000, 1899, LARGE_BODY_BYTES])
def test_the_size_regex_matches_exactly_the_integers_from_its_threshold(threshold: int) -> None:
    pattern = re.compile(at_least_regex(threshold))
    rng = random.Random(threshold)
    near = range(max(0, threshold - 1200), threshold + 1200)
    far = [rng.randrange(0, 10 ** rng.randrange(1, 12)) for _ in range(3000)]
    for number in [*near, *far, 10**20, 0]:
        assert bool(pattern.fullmatch(str(number))) == (number >= threshold), number
        # Leading zeros do not change a number (RFC 9110 allows them).
        assert bool(pattern.fullmatch("00" + str(number))) == (number >= threshold), number
    for text in ("", "-1048576", "1048576 ", "1e7", "+2000000", "2000000x"):
        assert not pattern.fullmatch(text), text


def test_large_bodies_take_the_listeners_stream_to_the_large_body_worker(
    tmp_path: Path,
) -> None:
    doc = bootstrap(tmp_path, LARGE)
    by_name = {r["name"]: r for r in routes(doc)}
    # After every route to a backend or model, before the route that answers 404.
    assert [r["name"] for r in routes(doc)] == [
        "a",
        "b",
        "model.1.large-body",
        "model.1.large-body-unsized",
        "model.1",
        "large-body",
        "large-body-unsized",
        "no-backend",
    ]
    size = at_least_regex(LARGE_BODY_BYTES)
    assert by_name["large-body"]["match"] == {
        "prefix": "/",
        "headers": [{"name": "content-length", "string_match": {"safe_regex": {"regex": size}}}],
    }
    assert by_name["large-body-unsized"]["match"] == {
        "prefix": "/",
        "headers": [
            {"name": "content-length", "present_match": True, "invert_match": True},
            {
                "name": ":method",
                "string_match": {"safe_regex": {"regex": "GET|HEAD"}},
                "invert_match": True,
            },
        ],
    }
    no_backend = by_name["no-backend"]
    for name in ("large-body", "large-body-unsized"):
        route = by_name[name]
        # Should the processor choose no backend, the same answer as no-backend.
        assert route["direct_response"] == no_backend["direct_response"]
        assert route["response_headers_to_add"] == no_backend["response_headers_to_add"]
        per_route = route["typed_per_filter_config"]["envoy.filters.http.ext_proc"]
        assert per_route["@type"].endswith("ext_proc.v3.ExtProcPerRoute")
        service = per_route["overrides"]["grpc_service"]
        assert service["envoy_grpc"] == {"cluster_name": LARGE_BODY_CLUSTER}
        assert "initial_metadata" not in service
        assert service["retry_policy"]["retry_on"] == (
            "connect-failure,refused-stream,reset-before-request"
        )


def test_a_model_with_several_backends_sends_each_attempt_of_a_large_body_there_too(
    tmp_path: Path,
) -> None:
    by_name = {r["name"]: r for r in routes(bootstrap(tmp_path, LARGE))}
    model = by_name["model.1"]
    assert "typed_per_filter_config" not in model
    large_headers = {
        "model.1.large-body": by_name["large-body"]["match"]["headers"],
        "model.1.large-body-unsized": by_name["large-body-unsized"]["match"]["headers"],
    }
    for name, headers in large_headers.items():
        variant = by_name[name]
        # The model's route as it is, for large bodies only.
        assert variant["route"] == model["route"]
        assert variant["response_headers_to_add"] == model["response_headers_to_add"]
        assert variant["match"]["headers"] == [*model["match"]["headers"], *headers]
        service = variant["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["overrides"][
            "grpc_service"
        ]
        assert service["envoy_grpc"] == {"cluster_name": LARGE_BODY_CLUSTER}
        # Served by the attempt router, as the cluster's own attempt filter says.
        assert service["initial_metadata"] == [{"key": CHAIN_METADATA_KEY, "value": ATTEMPT_CHAIN}]


def test_the_large_body_cluster_fails_over_to_the_workers(tmp_path: Path) -> None:
    found = clusters(bootstrap(tmp_path, LARGE))
    assert list(found) == [EXTPROC_CLUSTER, LARGE_BODY_CLUSTER, "a", "b", "model.1"]
    large, workers = found[LARGE_BODY_CLUSTER], found[EXTPROC_CLUSTER]
    # The workers' cluster's settings: one stream per connection, health checks, ejection.
    same = {k: v for k, v in large.items() if k not in ("name", "load_assignment")}
    assert same == {k: v for k, v in workers.items() if k not in ("name", "load_assignment")}
    assert large["load_assignment"] == {
        "cluster_name": LARGE_BODY_CLUSTER,
        "endpoints": [
            {"lb_endpoints": [_endpoint(1066)]},
            {"priority": 1, "lb_endpoints": [_endpoint(1063), _endpoint(1064)]},
        ],
    }


def test_without_large_body_workers_nothing_of_it_is_generated(tmp_path: Path) -> None:
    doc = bootstrap(tmp_path, ())
    assert [r["name"] for r in routes(doc)] == ["a", "b", "model.1", "no-backend"]
    assert list(clusters(doc)) == [EXTPROC_CLUSTER, "a", "b", "model.1"]
    assert "ExtProcPerRoute" not in str(doc)
    assert clusters(doc)[EXTPROC_CLUSTER]["load_assignment"]["endpoints"] == [
        {"lb_endpoints": [_endpoint(1063), _endpoint(1064)]}
    ]


def _endpoint(port: int) -> dict[str, Any]:
    return {
        "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}
    }
