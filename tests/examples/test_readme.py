"""``examples/README.md`` covers every example, and every path and flag it shows exists."""

from __future__ import annotations

import re
import subprocess
import sys

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


def test_the_flags_it_lists_are_the_scripts_flags() -> None:
    for script in ("subclass_processor.py", "compose_wrappers.py"):
        usage = subprocess.run(
            [sys.executable, str(EXAMPLES / script), "--help"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        for flag in ("--config", "--budgets", "--extproc-addr", "--metrics-addr"):
            assert flag in usage, (script, flag)
