"""``examples/envoy/envoy.yaml``, the hand-written bootstrap: Envoy accepts it, it says
what ``aigateway envoy-config`` says for the same config, and it works end to end."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from aigateway.extproc.ops.envoy_process import envoy_command, find_envoy
from tests.e2e.stack import AIGATEWAY, Stack, free_port, running, spawn, wait_until
from tests.examples.conftest import EXAMPLES, openai_client

HAND_WRITTEN = EXAMPLES / "envoy" / "envoy.yaml"
DEMO_CONFIG = EXAMPLES / "envoy" / "config.yaml"

Doc = dict[str, Any]


def generated() -> Doc:
    out = subprocess.run(
        [*AIGATEWAY, "envoy-config", "--config", str(DEMO_CONFIG)],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return dict(yaml.safe_load(out))


def hand_written() -> Doc:
    return dict(yaml.safe_load(HAND_WRITTEN.read_text()))


def hcm(bootstrap: Doc) -> Doc:
    (listener,) = bootstrap["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    assert manager["name"] == "envoy.filters.network.http_connection_manager"
    return dict(manager["typed_config"])


def clusters(bootstrap: Doc) -> dict[str, Doc]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def endpoint(cluster: Doc) -> Doc:
    (group,) = cluster["load_assignment"]["endpoints"]
    (lb_endpoint,) = group["lb_endpoints"]
    return dict(lb_endpoint["endpoint"]["address"])


def test_envoy_accepts_it() -> None:
    validated = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(HAND_WRITTEN)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stderr + validated.stdout


def test_it_says_what_envoy_config_generates() -> None:
    mine, theirs = hand_written(), generated()
    assert mine["admin"] == theirs["admin"]
    loopback = {"address": "127.0.0.1"}
    assert mine["admin"]["address"]["socket_address"] == {**loopback, "port_value": 9901}
    (listener,) = mine["static_resources"]["listeners"]
    (their_listener,) = theirs["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {**loopback, "port_value": 10000}
    limit = "per_connection_buffer_limit_bytes"
    assert listener[limit] == their_listener[limit]

    my_hcm, their_hcm = hcm(mine), hcm(theirs)
    # The filter chain: ext_proc (exactly as generated), then the router.
    assert [f["name"] for f in my_hcm["http_filters"]] == [
        "envoy.filters.http.ext_proc",
        "envoy.filters.http.router",
    ]
    assert my_hcm["http_filters"] == their_hcm["http_filters"]
    ext_proc = my_hcm["http_filters"][0]["typed_config"]["extension_config"]["typed_config"]
    assert ext_proc["grpc_service"]["envoy_grpc"] == {"cluster_name": "aigateway-extproc"}
    assert ext_proc["metadata_options"]["receiving_namespaces"]["untyped"] == ["aigateway"]
    # Header-based routes per backend, then the 404 fallback.
    assert my_hcm["route_config"] == their_hcm["route_config"]
    for key in ("generate_request_id", "http_protocol_options", "normalize_path", "merge_slashes"):
        assert my_hcm[key] == their_hcm[key], key
    assert my_hcm["local_reply_config"] == their_hcm["local_reply_config"]
    assert my_hcm["access_log"] == their_hcm["access_log"]

    mine_by_name, theirs_by_name = clusters(mine), clusters(theirs)
    assert mine_by_name.keys() == theirs_by_name.keys() == {"aigateway-extproc", "mock-openai"}
    for name, cluster in mine_by_name.items():
        theirs_cluster = theirs_by_name[name]
        assert endpoint(cluster) == endpoint(theirs_cluster), name
        for key in (
            "type",
            "lb_policy",
            "connect_timeout",
            "per_connection_buffer_limit_bytes",
            "typed_extension_protocol_options",
            "transport_socket",
        ):
            assert cluster.get(key) == theirs_cluster.get(key), f"{name}.{key}"
    extproc = endpoint(mine_by_name["aigateway-extproc"])["socket_address"]
    assert extproc == {**loopback, "port_value": 1063}
    assert endpoint(mine_by_name["mock-openai"])["socket_address"] == {
        **loopback,
        "port_value": 8000,
    }


def with_ports(
    bootstrap: Doc, *, listen: int, admin: int, extproc: int, backends: dict[str, int]
) -> Doc:
    """The bootstrap with its documented ports (10000, 9901, 1063, a backend on 8000)
    moved to free ones, changed in place where each is set."""
    admin_address = bootstrap["admin"]["address"]["socket_address"]
    assert admin_address["port_value"] == 9901
    admin_address["port_value"] = admin
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 10000
    listener["address"]["socket_address"]["port_value"] = listen
    for name, cluster in clusters(bootstrap).items():
        address = endpoint(cluster)["socket_address"]
        if name == "aigateway-extproc":
            assert address["port_value"] == 1063
            address["port_value"] = extproc
        else:
            assert address["port_value"] == 8000
            address["port_value"] = backends[name]
    for route in hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"]:
        if "route" in route:
            route["route"]["host_rewrite_literal"] = f"127.0.0.1:{backends[route['name']]}"
    return bootstrap


@dataclass
class HandWrittenEnvoyStack(Stack):
    """Mock backend + ``aigateway serve`` + Envoy on the hand-written bootstrap."""

    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mock_port, self.extproc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.listen_port, self.admin_port = free_port(), free_port()
        mock = spawn(
            "mock",
            [*AIGATEWAY, "mock-backend", "--listen", f"127.0.0.1:{self.mock_port}"],
            self.workdir,
        )
        self.procs["mock"] = mock
        config = yaml.safe_load(DEMO_CONFIG.read_text())
        config["backends"][0]["endpoint"] = f"http://127.0.0.1:{self.mock_port}"
        self.config_path.write_text(yaml.safe_dump(config))
        self.start_processor()
        bootstrap = with_ports(
            hand_written(),
            listen=self.listen_port,
            admin=self.admin_port,
            extproc=self.extproc_port,
            backends={"mock-openai": self.mock_port},
        )
        (self.workdir / "envoy.yaml").write_text(yaml.safe_dump(bootstrap))
        self.procs["envoy"] = spawn(
            "envoy",
            envoy_command(str(self.workdir / "envoy.yaml"), concurrency=1),
            self.workdir,
        )
        mock.wait_for_stderr("ready")
        self.wait_envoy_ready()
        return self


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(HandWrittenEnvoyStack(tmp_path_factory.mktemp("handwritten"))) as s:
        yield s


def test_a_request_through_the_hand_written_bootstrap(stack: Stack, tmp_path: Path) -> None:
    client = openai_client(stack)
    reply = client.chat.completions.create(
        model="llama3",
        messages=[{"role": "user", "content": "Hello there"}],
        extra_headers={"x-mock-output-tokens": "3", "x-request-id": "handwritten-1"},
    )
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    # Envoy's access log got the processor's metadata (receiving_namespaces works).
    envoy = stack.procs["envoy"]
    lines: list[Doc] = []

    def logged() -> bool:
        lines[:] = [
            json.loads(line)
            for line in envoy.stdout.read_text().splitlines()
            if "handwritten-1" in line
        ]
        return bool(lines)

    wait_until("Envoy's access log line", logged, timeout=10)
    (line,) = lines
    assert (line["backend"], line["model"], line["output_tokens"]) == ("mock-openai", "llama3", 3)
    assert line["status"] == 200
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(
            model="gpt-5", messages=[{"role": "user", "content": "Hello"}]
        )
    assert unknown.value.code == "model_not_found"
