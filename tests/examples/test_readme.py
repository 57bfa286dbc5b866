"""``examples/README.md`` covers every example, and every path and flag it shows exists."""

from __future__ import annotations

import ast
import re
import runpy
import sys
from typing import Any

import pytest

from tests.examples.conftest import EXAMPLES, REPO

README = (EXAMPLES / "README.md").read_text()


def test_every_example_has_a_section() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    sections = [name for heading in headings for name in re.findall(r"`([^`]+)`", heading)]
    # Modules only imported by the examples need no section of their own.
    helpers = {"tenant_budget.py", "budgets.yaml", "README.md"}
    shown = {s.split("/")[0] + ("/" if "/" in s else "") for s in sections}
    for entry in EXAMPLES.iterdir():
        if entry.name in helpers or entry.name.startswith((".", "__")):
            continue
        name = entry.name + ("/" if entry.is_dir() else "")
        assert name in shown, f"examples/README.md has no section for {name}"


def test_every_path_it_names_exists() -> None:
    for path in set(re.findall(r"examples/[\w./-]+\w", README)):
        assert (REPO / path).exists(), path


PUBLIC_API = {"aigateway.extproc", "aigateway.extproc.gateway", "aigateway.instrumentation"}


def test_examples_import_only_the_public_api() -> None:
    for script in sorted(EXAMPLES.glob("*.py")):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("aigateway"):
                    assert node.module in PUBLIC_API, (script.name, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("aigateway"), (script.name, alias.name)


@pytest.mark.parametrize(
    ("script", "keyword", "name"),
    [("subclass_processor.py", "routes", "routes"), ("compose_wrappers.py", "wrap", "guarded")],
)
def test_run_as_a_script_it_serves_what_the_cli_line_loads(
    script: str, keyword: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aigateway.extproc.gateway as gateway

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(gateway, "serve", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(sys, "argv", [script, "my-config.yaml"])
    module = runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    ((args, kwargs),) = calls
    assert args == ("my-config.yaml",)
    assert kwargs[keyword] is module[name]
