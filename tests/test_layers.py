"""The layers point one way (docs/architecture.md, "Layers"):

- ``translators`` imports no other layer and nothing of OpenTelemetry or Prometheus;
- ``extproc.framework`` (the core) imports none of the others;
- ``instrumentation`` imports only the core;
- ``extproc.gateway`` imports the core, the translators and the facts contract
  (``instrumentation/facts.py``), and only its composition root (``app.py``) imports the
  rest of ``instrumentation``;
- ``mock_backend`` imports at most the translators' wire formats, and only ``extproc.ops``,
  the tests and the benchmarks import it;
- ``extproc.ops`` sits on top;

and nothing imports the repository folders by their bare names, and no modules import
each other in a cycle. Every import counts: relative ones, function-local ones and
those under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {
    "translators": "aigateway.translators",
    "framework": "aigateway.extproc.framework",
    "gateway": "aigateway.extproc.gateway",
    "ops": "aigateway.extproc.ops",
    "instrumentation": "aigateway.instrumentation",
    "mock_backend": "aigateway.mock_backend",
}
FOLDERS = {
    "translators": ROOT / "translators",
    "framework": ROOT / "extproc" / "framework",
    "gateway": ROOT / "extproc" / "gateway",
    "ops": ROOT / "extproc" / "ops",
    "instrumentation": ROOT / "instrumentation",
    "mock_backend": ROOT / "mock_backend",
}
SOURCE_FOLDERS = ("extproc", "instrumentation", "translators", "mock_backend")
METRICS_LIBRARIES = ("opentelemetry", "prometheus_client")
#: The typed facts between the gateway and instrumentation: a layer of its own.
FACTS = "aigateway.instrumentation.facts"
COMPOSITION_ROOT = "extproc/gateway/app.py"
WIRE_FORMATS = "aigateway.translators.wire"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["aigateway", *parts])


def imports_in(source: str, module: str, *, package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, anywhere in it:
    functions, ``if TYPE_CHECKING:`` blocks and relative imports included. For
    ``from m import n``, both ``m`` and ``m.n`` (``n`` may be a submodule)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base_parts = parts if package else parts[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports (see :func:`imports_in`)."""
    return imports_in(path.read_text(), module_name(path), package=path.name == "__init__.py")


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


def test_imports_are_read_everywhere_in_a_module() -> None:
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        from . import sibling
        from .state import STATE
        from ..wire import sse
        if TYPE_CHECKING:
            from aigateway.typed import Only
        def later():
            import aigateway.local
            from aigateway.deep import name
        """
    )
    found = imports_in(source, "aigateway.pkg.sub.mod")
    assert {
        "aigateway.pkg.sub.sibling",
        "aigateway.pkg.sub.state",
        "aigateway.pkg.wire.sse",
        "aigateway.typed",
        "aigateway.local",
        "aigateway.deep.name",
    } <= found
    assert "aigateway.pkg.sub.state" in imports_in(
        "from .state import X", "aigateway.pkg.sub", package=True
    )


def test_translators_import_no_other_layer_and_no_metrics() -> None:
    assert imports_by_layer("translators") == {}


def test_the_framework_imports_none_of_the_others() -> None:
    assert imports_by_layer("framework") == {}


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


def test_the_mock_backend_imports_only_the_wire_formats() -> None:
    offenders: dict[str, set[str]] = {}
    for path in sorted(FOLDERS["mock_backend"].rglob("*.py")):
        names = {
            module
            for module in imported(path)
            if layer_of(module) not in (None, "mock_backend")
            and not (module == WIRE_FORMATS or module.startswith(WIRE_FORMATS + "."))
        }
        if names:
            offenders[str(path.relative_to(ROOT))] = names
    assert offenders == {}


def test_only_ops_tests_and_benchmarks_import_the_mock_backend() -> None:
    offenders = {
        path: names
        for layer in ("translators", "framework", "gateway", "instrumentation")
        for path, names in imports_by_layer(layer).items()
        if "mock_backend" in names
    }
    for folder in ("examples",):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if any(layer_of(m) == "mock_backend" for m in imported(path)):
                offenders[str(path.relative_to(ROOT))] = {"mock_backend"}
    assert offenders == {}


def test_nothing_imports_the_folders_by_their_bare_names() -> None:
    bare = ("extproc", "instrumentation", "translators", "mock_backend")
    offenders: dict[str, set[str]] = {}
    for folder in (*SOURCE_FOLDERS, "tests", "examples", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            names = {m for m in imported(path) if m.split(".")[0] in bare}
            if names:
                offenders[str(path.relative_to(ROOT))] = names
    assert offenders == {}


def test_no_import_cycles() -> None:
    files = {
        module_name(path): path
        for folder in SOURCE_FOLDERS
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
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
    assert cycles == []
