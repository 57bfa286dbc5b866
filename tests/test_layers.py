"""The layers point one way (DESIGN §1): translators import neither extproc,
instrumentation nor OpenTelemetry; in extproc only the composition root does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(extproc|instrumentation|opentelemetry|prometheus_client)\b", re.M
)
COMPOSITION_ROOT = {"extproc/app.py"}


def imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set(IMPORT.findall(path.read_text()))
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def test_translators_import_no_upper_layer_and_no_metrics() -> None:
    assert imports("translators") == {}


def test_only_the_composition_root_of_extproc_touches_metrics() -> None:
    offenders = {
        path: names & {"instrumentation", "opentelemetry", "prometheus_client"}
        for path, names in imports("extproc").items()
        if path not in COMPOSITION_ROOT
    }
    assert {p: n for p, n in offenders.items() if n} == {}
