"""``examples/prometheus/``: promtool accepts the scrape config (and its commented
variant), the rules and their unit tests, and the rules name only metrics, labels and
label values the gateway exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.examples.conftest import EXAMPLES
from tests.examples.promql import exported, problems, refs

PROMETHEUS = EXAMPLES / "prometheus"
#: Labels Prometheus adds to every scraped series (the rules use them on ``up``).
TARGET_LABELS = {"job", "instance"}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool not found: `make test` installs it (Debian package prometheus)"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "rules.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_accepts_the_scrape_config_and_its_commented_variant(tmp_path: Path) -> None:
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout

    # The variant for several processes is a commented-out replacement of the job.
    text = (PROMETHEUS / "prometheus.yml").read_text()
    block = re.search(r"^# --- variant.*?\n(.*?)^# --- end of variant", text, re.S | re.M)
    assert block is not None
    yaml_lines = [line[2:] for line in block.group(1).splitlines() if line.startswith("#  ")]
    variant_job = yaml.safe_load("\n".join(yaml_lines))
    config = yaml.safe_load(text)
    config["scrape_configs"] = variant_job
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "rules.yml", tmp_path / "rules.yml")
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (job,) = variant_job
    assert job["job_name"] == "aigateway"
    # four workers, their parent and the large-body worker
    assert len(job["static_configs"][0]["targets"]) == 6


def test_the_exported_set_is_the_metrics_contract() -> None:
    # docs/metrics.md, "Families"; if this fails, the helper that derives the exported set
    # is broken.
    # The helper drives a `tenant` header label, a price and both schemas.
    genai = {
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "tenant",
    }
    families = {
        "aigateway_requests_total": {"backend", "model", "status", "tenant"},
        "aigateway_model_tokens_total": {"backend", "model", "type", "tenant"},
        "aigateway_model_cost_usd_total": {"backend", "model", "tenant"},
        "aigateway_rate_limited_total": {"backend", "model", "rule", "tenant"},
        "aigateway_rate_limit_store_errors_total": {"decision"},
        "aigateway_first_token_latency_seconds_bucket": {"backend", "model", "tenant", "le"},
        "aigateway_inter_token_latency_seconds_bucket": {"backend", "model", "tenant", "le"},
        "aigateway_total_latency_seconds_bucket": {"backend", "model", "status", "tenant", "le"},
        "gen_ai_client_token_usage_bucket": genai | {"gen_ai_token_type", "le"},
        "gen_ai_server_request_duration_seconds_bucket": genai | {"error_type", "le"},
        "gen_ai_server_time_to_first_token_seconds_bucket": genai | {"le"},
        "gen_ai_server_time_per_output_token_seconds_bucket": genai | {"le"},
    }
    found = exported().labels_by_metric
    assert {name: set(found.get(name, ())) for name in families} == families
    assert exported().values["status"] == {"success", "error"}
    assert exported().values["gen_ai_token_type"] == {"input", "output"}


def test_rules_name_only_what_the_gateway_exports() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    known = set(exported().metrics) | recorded | {"up"}
    allowed = set(exported().labels) | TARGET_LABELS
    used_exported: set[str] = set()
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        assert problems(rule["expr"], known_metrics=known, allowed_labels=allowed) == [], name
        used_exported |= refs(rule["expr"]).metrics & set(exported().metrics)
        for text in rule.get("annotations", {}).values():
            for label in re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text):
                assert label in allowed, f"{name}: $labels.{label}"
    # Every family is used by some rule.
    assert {m.rsplit("_", 1)[0] for m in used_exported} >= {
        "aigateway_requests",
        "aigateway_model_tokens",
        "aigateway_model_cost_usd",
        "aigateway_rate_limited",
        "aigateway_rate_limit_store_errors",
        "aigateway_first_token_latency_seconds",
        "aigateway_inter_token_latency_seconds",
        "aigateway_total_latency_seconds",
        "gen_ai_client_token_usage",
        "gen_ai_server_request_duration_seconds",
        "gen_ai_server_time_to_first_token_seconds",
        "gen_ai_server_time_per_output_token_seconds",
    }
    # Cost per model and per tenant.
    assert {"model:aigateway_model_cost_usd:rate5m", "tenant:aigateway_model_cost_usd:rate5m"} <= (
        recorded
    )


def test_recorded_series_names_follow_level_metric_operation() -> None:
    for rule in rules():
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert level and operation, rule["record"]
            assert metric.startswith(("aigateway_", "gen_ai_")), rule["record"]


# -- the checker itself ---------------------------------------------------------------


def test_the_checker_finds_metrics_labels_and_values() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, model) (rate(aigateway_first_token_latency_"
        'seconds_bucket{backend=~"a|b", model!=""}[5m] offset 1h))) > 2.5e0'
        " and on (model) x:aigateway_y:p95_rate5m > 5"
    )
    found = refs(expr)
    assert found.metrics == {
        "aigateway_first_token_latency_seconds_bucket",
        "x:aigateway_y:p95_rate5m",
    }
    assert found.labels == {"le", "model", "backend"}
    assert ("backend", "=~", "a|b") in found.matchers


@pytest.mark.parametrize(
    ("expr", "issue"),
    [
        ("rate(aigateway_request_total[5m])", "unknown metric 'aigateway_request_total'"),
        ("sum by (team) (rate(aigateway_requests_total[5m]))", "unknown label 'team'"),
        ('aigateway_requests_total{tenant="initech"}', "tenant='initech' never exported"),
        ('aigateway_requests_total{code="500"}', "unknown label 'code'"),
        ('aigateway_requests_total{status="failed"}', "status='failed' never exported"),
        ('aigateway_model_tokens_total{type=~"input|output"}', "type='input' never exported"),
    ],
)
def test_the_checker_flags_what_is_not_exported(expr: str, issue: str) -> None:
    known = set(exported().metrics)
    assert issue in problems(expr, known_metrics=known, allowed_labels=set(exported().labels))


def test_the_checker_refuses_selectors_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        refs("aigateway_requests_total{status=error}")
