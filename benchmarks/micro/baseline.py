"""The translators of another revision, importable beside the current ones, so that one
benchmark run can time both (``BENCH_BASELINE=<rev>``; benchmarks/NOTES.md).

``translators/`` of the revision is copied out of git into a temporary folder as the
package ``baseline_translators``, its own imports renamed to match.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "baseline_translators"


def revision() -> str | None:
    """The baseline revision asked for (``BENCH_BASELINE``), ``None`` when none is."""
    return os.environ.get("BENCH_BASELINE") or None


def load(rev: str) -> ModuleType:
    """``rev``'s ``aigateway.translators`` as ``baseline_translators``."""
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    git = ["git", "-C", str(ROOT)]
    names = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", rev, "translators/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    target = Path(tempfile.mkdtemp(prefix="aigateway-baseline-"))
    for name in names:
        if not name.endswith(".py"):
            continue
        source = subprocess.run(
            [*git, "show", f"{rev}:{name}"], check=True, capture_output=True, text=True
        ).stdout
        path = target / PACKAGE / Path(name).relative_to("translators")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(re.sub(r"\baigateway\.translators\b", PACKAGE, source))
    sys.path.insert(0, str(target))
    return importlib.import_module(PACKAGE)
