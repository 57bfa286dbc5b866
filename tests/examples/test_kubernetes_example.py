"""``examples/kubernetes/``: the manifests parse, reference only objects that exist,
agree with each other on paths and ports, embed a gateway config and an Envoy bootstrap
that the real tools accept, and the processor's exec probe works against a real
``aigateway serve`` on a unix socket. Offline: no cluster needed."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import certifi
import pytest
import yaml

from aigateway.extproc.framework.addresses import Address
from aigateway.extproc.gateway.config import GatewayConfig, parse_config
from aigateway.extproc.ops.envoy_bootstrap import EnvoyOptions, build_bootstrap
from aigateway.extproc.ops.envoy_process import find_envoy
from tests.e2e.stack import AIGATEWAY, spawn
from tests.examples.conftest import EXAMPLES

KUBERNETES = EXAMPLES / "kubernetes"
#: The CA bundle in Envoy's image (Ubuntu), which the embedded bootstrap names.
ENVOY_IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

Doc = dict[str, Any]


def manifests(name: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d is not None]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(deployment: Doc) -> dict[str, Doc]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def port_number(container: Doc, port: int | str) -> int:
    """A container port given by number or by name."""
    if isinstance(port, int):
        return port
    (found,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(found)


def mounted_file(deployment: Doc, container: Doc, docs: list[Doc], path: str) -> str:
    """The content of ``path`` in ``container``: from the ConfigMap volume mounted there."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        if PurePosixPath(path).parent == PurePosixPath(mount["mountPath"]):
            config_map = volumes[mount["name"]]["configMap"]["name"]
            return str(one(docs, "ConfigMap", config_map)["data"][PurePosixPath(path).name])
    raise AssertionError(f"nothing is mounted at {path} in {container['name']}")


def gateway_config(text: str) -> GatewayConfig:
    return parse_config(yaml.safe_load(text), "ConfigMap config.yaml")


def secret_refs(container: Doc) -> list[tuple[str, str, str]]:
    """(env var, secret, key) for each env var taken from a Secret."""
    return [
        (e["name"], e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]


@pytest.mark.parametrize("name", ["gateway.yaml", "envoy-gateway.yaml"])
def test_every_manifest_names_itself(name: str) -> None:
    docs = manifests(name)
    assert len(docs) >= 5
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "aigateway", doc["metadata"]["name"]


@pytest.mark.parametrize("name", ["gateway.yaml", "envoy-gateway.yaml"])
def test_secrets_and_config_the_processor_needs_exist(name: str) -> None:
    docs = manifests(name)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    processor = containers(deployment)["processor"]
    config = gateway_config(
        mounted_file(deployment, processor, docs, flag(processor["args"], "--config"))
    )
    refs = secret_refs(processor)
    for _, secret, key in refs:
        assert key in one(docs, "Secret", secret)["stringData"], f"{secret}/{key}"
    # Every {env: NAME} in the config is set from a Secret.
    wanted = {
        b.auth.api_key.env
        for b in config.backends
        if b.auth is not None and b.auth.api_key is not None and b.auth.api_key.env
    }
    assert wanted and wanted <= {variable for variable, _, _ in refs}


@pytest.mark.parametrize("name", ["gateway.yaml", "envoy-gateway.yaml"])
def test_pods_are_non_root_read_only_with_resources_and_probes(name: str) -> None:
    deployment = next(d for d in manifests(name) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        assert container["resources"]["requests"]["cpu"], container["name"]
        assert container["resources"]["requests"]["memory"], container["name"]
        assert "readinessProbe" in container and "livenessProbe" in container, container["name"]
    # The image's user is the one the pod runs as.
    dockerfile = (KUBERNETES / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert int(user[0]) == pod["securityContext"]["runAsUser"]


# -- gateway.yaml: Envoy and the processor in one pod -------------------------------------


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    docs = manifests("gateway.yaml")
    deployment = one(docs, "Deployment", "aigateway")
    parts = containers(deployment)
    assert parts.keys() == {"envoy", "processor"}
    envoy, processor = parts["envoy"], parts["processor"]
    bootstrap_path = flag(envoy["args"], "-c")
    return {
        "docs": docs,
        "deployment": deployment,
        "envoy": envoy,
        "processor": processor,
        "bootstrap_text": mounted_file(deployment, envoy, docs, bootstrap_path),
        "config_text": mounted_file(
            deployment, processor, docs, flag(processor["args"], "--config")
        ),
    }


def test_the_socket_volume_is_shared_and_the_bootstrap_dials_it(pod: dict[str, Any]) -> None:
    socket = Address.parse(flag(pod["processor"]["args"], "--extproc-addr"))
    assert socket.unix_path is not None
    socket_dir = str(PurePosixPath(socket.unix_path).parent)
    mounts = {
        name: {m["mountPath"]: m["name"] for m in pod[name]["volumeMounts"]}
        for name in ("envoy", "processor")
    }
    # The same volume, at the socket's directory, in both containers, writable.
    assert mounts["envoy"][socket_dir] == mounts["processor"][socket_dir]
    volume_name = mounts["envoy"][socket_dir]
    volumes = {v["name"]: v for v in pod["deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[volume_name]
    for name in ("envoy", "processor"):
        (mount,) = [m for m in pod[name]["volumeMounts"] if m["name"] == volume_name]
        assert not mount.get("readOnly"), name
    bootstrap = yaml.safe_load(pod["bootstrap_text"])
    (extproc,) = [
        c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "aigateway-extproc"
    ]
    (endpoint,) = extproc["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"] == {"pipe": {"path": socket.unix_path}}


def test_ports_agree_across_bootstrap_service_probes_and_scraping(pod: dict[str, Any]) -> None:
    envoy, processor, docs = pod["envoy"], pod["processor"], pod["docs"]
    bootstrap = yaml.safe_load(pod["bootstrap_text"])
    (listener,) = bootstrap["static_resources"]["listeners"]
    listen_port = listener["address"]["socket_address"]["port_value"]
    admin_port = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    # Reachable from outside the container (the kubelet, the Service).
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "0.0.0.0"

    service = one(docs, "Service", "aigateway")
    (service_port,) = service["spec"]["ports"]
    assert port_number(envoy, service_port["targetPort"]) == listen_port
    template = pod["deployment"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()

    readiness = envoy["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/ready"
    assert port_number(envoy, readiness["port"]) == admin_port
    assert port_number(envoy, envoy["livenessProbe"]["httpGet"]["port"]) == admin_port

    metrics_port = Address.parse(flag(processor["args"], "--metrics-addr")).port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    monitor = one(docs, "PodMonitor", "aigateway")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert port_number(processor, endpoint["port"]) == metrics_port
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    )

    # The NetworkPolicy lets clients and Prometheus in, and not the admin port.
    policy = one(docs, "NetworkPolicy", "aigateway")
    open_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert open_ports == {listen_port, metrics_port}


def test_the_embedded_bootstrap_is_what_envoy_config_generates(pod: dict[str, Any]) -> None:
    config = gateway_config(pod["config_text"])
    embedded = yaml.safe_load(pod["bootstrap_text"])
    generated = build_bootstrap(
        config,
        EnvoyOptions(
            listen=Address.parse("0.0.0.0:10000"),
            extproc=[Address.parse(flag(pod["processor"]["args"], "--extproc-addr"))],
            admin=Address.parse("0.0.0.0:9901"),
            ca_bundle=ENVOY_IMAGE_CA_BUNDLE,
        ),
    )
    assert embedded == yaml.safe_load(yaml.safe_dump(generated))


def test_envoy_accepts_the_embedded_bootstrap(pod: dict[str, Any], tmp_path: Path) -> None:
    # The CA bundle path is the Envoy image's; point it at one that exists here.
    text = pod["bootstrap_text"].replace(ENVOY_IMAGE_CA_BUNDLE, certifi.where())
    (tmp_path / "envoy.yaml").write_text(text)
    validated = subprocess.run(
        [find_envoy(), "--mode", "validate", "-c", str(tmp_path / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stderr + validated.stdout


def test_the_processor_probes_are_aigateway_health(pod: dict[str, Any]) -> None:
    processor = pod["processor"]
    socket = flag(processor["args"], "--extproc-addr")
    ready = processor["readinessProbe"]["exec"]["command"]
    live = processor["livenessProbe"]["exec"]["command"]
    assert ready == ["aigateway", "health", "--extproc-addr", socket]
    assert live == [*ready, "--live"]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # unix socket paths are limited to ~100 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="aigw-", dir="/tmp") as name:
        yield Path(name)


def test_the_processor_probes_work_on_a_real_unix_socket(
    pod: dict[str, Any], short_tmp: Path
) -> None:
    processor = pod["processor"]
    socket = flag(processor["args"], "--extproc-addr")
    local_socket = f"unix:{short_tmp / 'aigateway.extproc.sock'}"

    def probe(kind: str) -> int:
        command = processor[kind]["exec"]["command"]
        assert command[0] == "aigateway"
        argv = [*AIGATEWAY, *(local_socket if arg == socket else arg for arg in command[1:])]
        return subprocess.run(argv, capture_output=True, timeout=30).returncode

    assert probe("readinessProbe") != 0  # nothing listens yet
    assert probe("livenessProbe") != 0
    (short_tmp / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "backends": [{"name": "b", "schema": "openai", "endpoint": "http://127.0.0.1:9"}],
                "models": [{"name": "m", "backend": "b"}],
            }
        )
    )
    serve = spawn(
        "serve",
        [
            *AIGATEWAY,
            "serve",
            "--config",
            str(short_tmp / "config.yaml"),
            "--extproc-addr",
            local_socket,
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        short_tmp,
    )
    try:
        serve.wait_for_stderr("ready")
        assert probe("readinessProbe") == 0
        assert probe("livenessProbe") == 0
    finally:
        assert serve.stop() == 0
    assert probe("readinessProbe") != 0


# -- envoy-gateway.yaml: the processor behind Envoy Gateway --------------------------------


@pytest.fixture(scope="module")
def eg() -> list[Doc]:
    return manifests("envoy-gateway.yaml")


def test_the_extension_policy_sends_what_the_processor_needs(eg: list[Doc]) -> None:
    policy = one(eg, "EnvoyExtensionPolicy", "aigateway")
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    (target,) = policy["spec"]["targetRefs"]
    gateway = one(eg, "Gateway", target["name"])
    assert target["kind"] == "Gateway" and gateway["spec"]["gatewayClassName"] == "eg"
    (ext_proc,) = policy["spec"]["extProc"]
    mode = ext_proc["processingMode"]
    assert mode["request"]["body"] == "Buffered"
    assert mode["response"]["body"] == "Buffered"
    assert mode["allowModeOverride"] is True
    assert ext_proc["metadata"]["writableNamespaces"] == ["aigateway"]
    assert ext_proc["failOpen"] is False
    timeout = re.fullmatch(r"(\d+)s", ext_proc["messageTimeout"])
    assert timeout and int(timeout.group(1)) >= 5  # not Envoy Gateway's 200ms default

    # backendRef -> Service -> the processor's container port and listen address.
    (ref,) = ext_proc["backendRefs"]
    service = one(eg, "Service", ref["name"])
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
    deployment = one(eg, "Deployment", "aigateway-processor")
    processor = containers(deployment)["processor"]
    listen = Address.parse(flag(processor["args"], "--extproc-addr"))
    assert port_number(processor, service_port["targetPort"]) == listen.port
    assert not listen.is_loopback  # Envoy Gateway's Envoy runs in another pod
    # Off loopback, serve needs TLS or an explicit opt-in to plaintext.
    assert "--allow-remote-plaintext" in processor["args"] or "--tls-cert" in processor["args"]
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    # Kubernetes' own gRPC probe works here: the processor listens on TCP.
    assert processor["readinessProbe"]["grpc"]["port"] == listen.port


def test_a_route_per_backend_on_the_routing_header(eg: list[Doc]) -> None:
    deployment = one(eg, "Deployment", "aigateway-processor")
    processor = containers(deployment)["processor"]
    config = gateway_config(
        mounted_file(deployment, processor, eg, flag(processor["args"], "--config"))
    )
    routes = [d for d in eg if d["kind"] == "HTTPRoute"]
    for backend in config.backends:
        route = one(eg, "HTTPRoute", f"aigateway-{backend.name}")
        (rule,) = route["spec"]["rules"]
        (match,) = rule["matches"]
        assert match["headers"] == [
            {"name": config.headers.backend, "type": "Exact", "value": backend.name}
        ]
        (ref,) = rule["backendRefs"]
        target = one(eg, ref["kind"], ref["name"])
        (endpoint,) = target["spec"]["endpoints"]
        assert (endpoint["fqdn"]["hostname"], endpoint["fqdn"]["port"]) == (
            backend.host,
            backend.port,
        )
        assert ref["port"] == backend.port
        (rewrite,) = [f for f in rule["filters"] if f["type"] == "URLRewrite"]
        assert rewrite["urlRewrite"]["hostname"] == backend.authority
        if backend.tls:
            tls = one(eg, "BackendTLSPolicy", backend.name)
            assert tls["spec"]["targetRefs"][0]["name"] == backend.name
            assert tls["spec"]["validation"]["hostname"] == backend.host
        assert rule["timeouts"]["request"] == f"{backend.timeout_seconds:g}s"
    # Plus the catch-all that makes every request reach the processor first.
    fallback = one(eg, "HTTPRoute", "aigateway-no-backend")
    (rule,) = fallback["spec"]["rules"]
    (filter_,) = rule["filters"]
    direct = one(eg, "HTTPRouteFilter", filter_["extensionRef"]["name"])
    assert direct["spec"]["directResponse"]["statusCode"] == 404
    assert len(routes) == len(config.backends) + 1
    for route in routes:
        assert [p["name"] for p in route["spec"]["parentRefs"]] == ["aigateway"]


def test_buffers_fit_the_largest_request(eg: list[Doc]) -> None:
    deployment = one(eg, "Deployment", "aigateway-processor")
    processor = containers(deployment)["processor"]
    config = gateway_config(
        mounted_file(deployment, processor, eg, flag(processor["args"], "--config"))
    )

    def quantity(text: str) -> int:
        number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", text).groups()  # type: ignore[union-attr]
        return int(number) * {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[unit]

    client = one(eg, "ClientTrafficPolicy", "aigateway")
    assert quantity(client["spec"]["connection"]["bufferLimit"]) >= config.max_request_bytes
    backend = one(eg, "BackendTrafficPolicy", "aigateway")
    assert quantity(backend["spec"]["connection"]["bufferLimit"]) >= config.max_request_bytes
    targeted = {t["name"] for t in backend["spec"]["targetRefs"]}
    assert targeted == {f"aigateway-{b.name}" for b in config.backends}


def test_the_readme_names_every_file_and_the_limits() -> None:
    readme = (KUBERNETES / "README.md").read_text()
    for name in ("gateway.yaml", "envoy-gateway.yaml", "Dockerfile", "aigateway health"):
        assert name in readme
    for limit in ("--allow-remote-plaintext", "clear_route_cache", "bufferLimit"):
        assert limit in readme
    # Every command in the README's code blocks names files that exist.
    for path in re.findall(r"examples/kubernetes/[\w.-]+", readme):
        assert (EXAMPLES.parent / path).exists(), path
