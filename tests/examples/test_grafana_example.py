"""``examples/grafana/aigateway-dashboard.json``: a Grafana dashboard whose every query
names only what the gateway exports and is valid PromQL (checked by promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.examples.conftest import EXAMPLES
from tests.examples.promql import exported, problems

DASHBOARD = EXAMPLES / "grafana" / "aigateway-dashboard.json"

#: Template variables, with the values Grafana would put in their place.
SUBSTITUTIONS = {
    "${datasource}": "prometheus",
    "$__rate_interval": "5m",
    "$__range": "1h",
    "$backend": "mock-openai",
    "$model": "gpt-4o-mini",
}

Doc = dict[str, Any]


def dashboard() -> Doc:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(doc: Doc) -> Iterator[Doc]:
    for panel in doc["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def targets(doc: Doc) -> list[tuple[str, Doc]]:
    return [(p["title"], t) for p in panels(doc) for t in p.get("targets", [])]


def substitute(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a template variable without a test value: {expr}"
    return expr


def test_template_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("backend", "model"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == "${datasource}"
        assert variable["includeAll"] and variable["multi"]
        query = variable["query"]["query"]
        # label_values(<series selector>, <label>): both must exist.
        match = re.fullmatch(r"label_values\((.+),\s*([a-z_]+)\)", query)
        assert match, query
        assert match.group(2) == name
        assert (
            problems(
                match.group(1),
                known_metrics=set(exported().metrics),
                allowed_labels=set(exported().labels),
            )
            == []
        )


def test_schema_and_the_panels_asked_for() -> None:
    doc = dashboard()
    assert 36 <= doc["schemaVersion"] <= 41
    assert doc["uid"] and doc["title"]
    titles = {p["title"] for p in panels(doc)}
    assert titles >= {
        "Requests per second by status",
        "Error ratio by model",
        "Tokens per second by type",
        "Time to first token (p50, p95)",
        "Time between tokens (p50, p95)",
        "Total latency p95 by status",
        "Requests and tokens by backend and model",
        "Cost per hour by model (USD)",
        "Cost per hour by tenant (USD)",
        "Refusals per second by rule and tenant",
        "GenAI request duration p95 by provider",
        "GenAI token usage per second by type",
        "GenAI failed requests per second by error.type",
        "GenAI time to first token and per output token (p95)",
        "Backend attempts per second by result",
    }
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    for panel in panels(doc):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_every_query_names_only_exported_metrics_labels_and_values() -> None:
    known, allowed = set(exported().metrics), set(exported().labels)
    found = targets(dashboard())
    assert len(found) >= 10
    for title, target in found:
        expr = target["expr"]
        assert problems(expr, known_metrics=known, allowed_labels=allowed) == [], title
        # Filtered by the dashboard's variables, so the selectors at the top apply (the
        # GenAI families have no backend label: the model variable filters them).
        if "gen_ai_" in expr:
            assert 'gen_ai_request_model=~"$model"' in expr, title
        else:
            assert 'backend=~"$backend"' in expr and 'model=~"$model"' in expr, title


def test_the_new_families_have_panels() -> None:
    exprs = " ".join(target["expr"] for _, target in targets(dashboard()))
    for family in (
        "aigateway_model_cost_usd_total",
        "aigateway_rate_limited_total",
        "aigateway_backend_attempts_total",
        "gen_ai_server_request_duration_seconds",
        "gen_ai_client_token_usage",
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_per_output_token_seconds",
    ):
        assert family in exprs, family
    assert "sum by (tenant)" in exprs


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard:query:{i}", "expr": substitute(target["expr"])}
        for i, (_, target) in enumerate(targets(dashboard()))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    tool = shutil.which("promtool")
    assert tool, "promtool not found: `make test` installs it (Debian package prometheus)"
    checked = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
