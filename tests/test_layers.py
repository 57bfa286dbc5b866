"""The layers point one way (docs/architecture.md, "Layers"):

- ``translators`` imports no other layer and nothing of OpenTelemetry or Prometheus;
- ``extproc.framework`` (the core) imports none of the others;
- ``instrumentation`` imports only the core;
- ``extproc.gateway`` imports the core, the translators and the facts contract
  (``instrumentation/facts.py``), and only its composition root (``app.py``) imports the
  rest of ``instrumentation``;
- ``extproc.ops`` sits on top;

and nothing imports the repository folders by their bare names, and no modules import
each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "translators": "aigateway.translators",
    "framework": "aigateway.extproc.framework",
    "gateway": "aigateway.extproc.gateway",
    "ops": "aigateway.extproc.ops",
    "instrumentation": "aigateway.instrumentation",
}
FOLDERS = {
    "translators": ROOT / "translators",
    "framework": ROOT / "extproc" / "framework",
    "gateway": ROOT / "extproc" / "gateway",
    "ops": ROOT / "extproc" / "ops",
    "instrumentation": ROOT / "instrumentation",
}
METRICS_LIBRARIES = ("opentelemetry", "prometheus_client")
#: The typed facts between the gateway and instrumentation: a layer of its own.
FACTS = "aigateway.instrumentation.facts"
COMPOSITION_ROOT = "extproc/gateway/app.py"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["aigateway", *parts])


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def layer_of(module: str) -> str | None:
    if module == FACTS or module.startswith(FACTS + "."):
        return "facts"
    for layer, prefix in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    if module in ("aigateway.extproc",):
        return "framework"  # the package root re-exports the framework
    return None


def imports_by_layer(layer: str) -> dict[str, set[str]]:
    """File -> the layers (and metrics libraries) it imports, other than its own."""
    found: dict[str, set[str]] = {}
    for path in sorted(FOLDERS[layer].rglob("*.py")):
        names: set[str] = set()
        for module in imported(path):
            other = layer_of(module)
            if other is not None and other != layer:
                names.add(other)
            if module.split(".")[0] in METRICS_LIBRARIES:
                names.add(module.split(".")[0])
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_translators_import_no_other_layer_and_no_metrics() -> None:
    assert imports_by_layer("translators") == {}


def test_the_framework_imports_none_of_the_others() -> None:
    offenders = {p: n - {"translators"} for p, n in imports_by_layer("framework").items()}
    assert {p: n for p, n in offenders.items() if n} == {}


def test_instrumentation_imports_only_the_framework() -> None:
    offenders = {
        path: names - {"framework", "facts", *METRICS_LIBRARIES}
        for path, names in imports_by_layer("instrumentation").items()
    }
    assert {p: n for p, n in offenders.items() if n} == {}


def test_only_the_composition_root_of_the_gateway_touches_metrics() -> None:
    offenders = {
        path: names - {"framework", "translators", "facts"}
        for path, names in imports_by_layer("gateway").items()
        if path != COMPOSITION_ROOT
    }
    assert {p: n for p, n in offenders.items() if n} == {}
    assert imports_by_layer("gateway")[COMPOSITION_ROOT] - {
        "framework",
        "translators",
        "facts",
    } == {"instrumentation"}


def test_nothing_imports_the_folders_by_their_bare_names() -> None:
    bare = ("extproc", "instrumentation", "translators")
    offenders: dict[str, set[str]] = {}
    for folder in ("extproc", "instrumentation", "translators", "tests", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            names = {m for m in imported(path) if m.split(".")[0] in bare}
            if names:
                offenders[str(path.relative_to(ROOT))] = names
    assert offenders == {}


def test_no_import_cycles() -> None:
    files = {
        module_name(path): path
        for folder in ("extproc", "instrumentation", "translators")
        for path in (ROOT / folder).rglob("*.py")
    }
    graph = {
        name: {m for m in imported(path) if m in files and m != name}
        for name, path in files.items()
    }
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
    assert cycles == []
