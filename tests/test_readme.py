"""The README matches the code: its config snippets validate, its CLI synopsis names only
real flags, its metric table is the exported set, its PromQL parses, and its shell and
Python snippets run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from aigateway.extproc.gateway.config import parse_config
from aigateway.extproc.ops.cli import build_parser
from aigateway.instrumentation.metrics import COST, FAMILIES

README = (Path(__file__).parent.parent / "README.md").read_text()


def fenced(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a markdown text, as (language, body)."""
    out: list[tuple[str, str]] = []
    lang: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):  # a fence, maybe indented in a list item
            if lang is None:
                lang, body = line.lstrip()[3:].strip(), []
            else:
                out.append((lang, textwrap.dedent("\n".join(body)) + "\n"))
                lang = None
        elif lang is not None:
            body.append(line)
    return out


def blocks(lang: str, text: str = README) -> list[str]:
    return [body for block_lang, body in fenced(text) if block_lang == lang]


def test_yaml_config_snippets_validate() -> None:
    checked = 0
    for text in blocks("yaml"):
        doc: Any = yaml.safe_load(text)
        if isinstance(doc, dict) and "backends" in doc:
            parse_config(doc, "README")
        elif isinstance(doc, list) and doc and "schema" in doc[0]:
            # A backend snippet: it must validate as a backend of some config.
            names = [b["name"] for b in doc]
            parse_config(
                {"backends": doc, "models": [{"name": "m", "backend": names[0]}]}, "README"
            )
        else:
            continue
        checked += 1
    assert checked >= 5


def test_cli_synopsis_names_real_flags() -> None:
    section = README.split("## Command line", 1)[1].split("\n## ", 1)[0]
    text = next(b for b in blocks("", section) if "aigateway serve" in b)
    commands = [
        c for c in re.split(r"\n(?=aigateway )", text.strip()) if c.split()[1] != "--version"
    ]
    assert "aigateway --version" in text
    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {c.split()[1] for c in commands} == set(sub)
    for command in commands:
        name = command.split()[1]
        known = {s for action in sub[name]._actions for s in action.option_strings}
        for flag in re.findall(r"--[a-z-]+", command):
            assert flag in known, f"aigateway {name} has no {flag}"


def test_metric_table_is_the_exported_set() -> None:
    table = README.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `(aigateway_[a-z_]+)`", table, flags=re.M))
    exported = {
        n if n != "aigateway_requests" and n != "aigateway_model_tokens" else n + "_total"
        for n in FAMILIES
    }
    assert named == exported | {COST + "_total"}


def test_promql_examples_are_valid(tmp_path: Path) -> None:
    queries = [q for b in blocks("promql") for q in re.split(r"\n(?=#)", b.strip())]
    rules = []
    for i, query in enumerate(queries):
        expr = "\n".join(line for line in query.splitlines() if not line.startswith("#"))
        rules.append({"record": f"readme:query_{i}", "expr": expr})
    assert len(rules) >= 5
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "readme", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("target", ["up", "test"])
def test_quick_start_commands_exist(target: str) -> None:
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, flags=re.M)
    assert f"make {target}" in README


# --- the snippets run as written ------------------------------------------------------
#
# Each runs verbatim in a network and PID namespace of its own (unshare): the README's
# fixed ports (10000, 9190, 8000...) are then this test's alone, a `make up` in another
# terminal is not disturbed, and every process the snippet starts ends with the test.

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def run_isolated(
    workdir: Path, script: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``script`` (bash) in fresh network and PID namespaces, loopback up."""
    driver = workdir / "driver.sh"
    driver.write_text("set -euo pipefail\nip link set lo up\n" + script)
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--kill-child", "bash", str(driver)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env=env,
    )


# Waits (polling with a deadline, never a fixed sleep) for a line in a file or a URL.
WAIT_FOR = """
wait_for() {  # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 600); do "$@" >/dev/null 2>&1 && return 0; read -rt 0.1 <> <(:) || true; done
  echo "timed out waiting for $what" >&2; return 1
}
"""


def test_the_tour_runs_as_written_against_make_up(tmp_path: Path) -> None:
    tour = blocks("sh", section("A five-minute tour"))[0]
    assert ".venv/bin/python" in tour and "curl" in tour
    (tmp_path / "tour.sh").write_text(tour)
    makefile = (REPO / "Makefile").read_text()
    up_command = re.search(r"^up:.*\n\t(.+)$", makefile, re.M)[1]  # type: ignore[index]
    assert up_command == "$(BIN)/aigateway up $(UP_ARGS)"
    result = run_isolated(
        tmp_path,
        WAIT_FOR
        + f"""
setsid {VENV_BIN}/aigateway up > up.out 2> up.err < /dev/null &
UP=$!
trap 'kill -TERM -- -$UP 2>/dev/null || true; wait $UP || true' EXIT
wait_for "aigateway up" grep -q "aigateway ready" up.err
cd {REPO}
bash -euo pipefail {tmp_path / "tour.sh"}
""",
    )
    assert result.returncode == 0, result.stdout + result.stderr + _read(tmp_path / "up.err")
    out = result.stdout
    assert '"object":"chat.completion"' in out
    assert re.search(
        r'^aigateway_requests_total\{backend="mock-openai",model="gpt-4o-mini"', out, re.M
    )
    # The streamed reply printed by the Python snippet: the mock's words on one line.
    assert any(len(line.split()) >= 8 and "{" not in line for line in out.splitlines()), out


def test_running_behind_your_own_envoy_runs_as_written(tmp_path: Path) -> None:
    block = blocks("sh", section("Running behind your own Envoy"))[0]
    (tmp_path / "block.sh").write_text(block)
    result = run_isolated(
        tmp_path,
        WAIT_FOR
        + r"""
setsid bash -euo pipefail block.sh > block.out 2> block.err < /dev/null &
BLOCK=$!
trap 'kill -TERM -- -$BLOCK 2>/dev/null || true; wait $BLOCK || true' EXIT
CHAT='{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi there"}]}'
wait_for "a first answer through Envoy" curl -sf http://127.0.0.1:10000/v1/chat/completions \
  -H 'content-type: application/json' -d "$CHAT"
curl -sf http://127.0.0.1:10000/v1/chat/completions -H 'content-type: application/json' \
  -d "$CHAT"
""",
    )
    assert result.returncode == 0, (
        result.stdout
        + result.stderr
        + _read(tmp_path / "block.out")
        + _read(tmp_path / "block.err")
    )
    assert '"object":"chat.completion"' in result.stdout
    assert (tmp_path / "gateway.yaml").is_file() and (tmp_path / "envoy.yaml").is_file()


def test_the_scrape_example_runs_as_written(tmp_path: Path) -> None:
    part = section("A scrape example")
    (config,) = blocks("yaml", part)
    (script,) = blocks("sh", part)
    (printed,) = blocks("", part)
    assert "schema: both" in config and "labels_from_headers" in config and "price" in config
    (tmp_path / "telemetry.yaml").write_text(config)
    (tmp_path / "scrape.sh").write_text(script)
    result = run_isolated(
        tmp_path,
        WAIT_FOR
        + f"""
setsid {VENV_BIN}/aigateway up --config telemetry.yaml > up.out 2> up.err < /dev/null &
UP=$!
trap 'kill -TERM -- -$UP 2>/dev/null || true; wait $UP || true' EXIT
wait_for "aigateway up" grep -q "aigateway ready" up.err
bash -euo pipefail scrape.sh
""",
    )
    assert result.returncode == 0, result.stdout + result.stderr + _read(tmp_path / "up.err")
    assert result.stdout == printed


async def test_the_wrapper_snippet_runs_as_written(tmp_path: Path) -> None:
    from aigateway.extproc import Headers, ImmediateResponse, Processor
    from aigateway.extproc.ops.plugins import load_wrap

    snippet = next(
        b for b in blocks("python", section("Writing a processor and composing wrappers"))
    )
    (tmp_path / "my_policy.py").write_text(textwrap.dedent(snippet))
    wrap = load_wrap(f"{tmp_path / 'my_policy.py'}:RequireTenant")
    chat = Headers([(":method", "POST"), (":path", "/v1/chat/completions")])
    with pytest.raises(ImmediateResponse) as refused:
        await wrap(Processor()).on_request_headers(chat)
    assert refused.value.status == 401
    tenant = Headers([*chat.pairs, ("x-tenant", "acme")])
    await wrap(Processor()).on_request_headers(tenant)  # passes to the inner processor


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_the_workers_snippet_runs_as_written(tmp_path: Path) -> None:
    (block,) = blocks("sh", section("Performance").split("### More than one core", 1)[1])
    (tmp_path / "block.sh").write_text(block)
    (tmp_path / "examples").symlink_to(REPO / "examples")  # the paths it names, read-only
    result = run_isolated(
        tmp_path,
        WAIT_FOR
        + r"""
bash -euo pipefail block.sh > block.out 2> block.err < /dev/null
wait_for "the 4 workers" grep -q "aigateway ready: 4 workers" block.err
for port in 9190 9191 9192 9193; do curl -sf "http://127.0.0.1:$port/metrics" > /dev/null; done
""",
    )
    logs = _read(tmp_path / "block.out") + _read(tmp_path / "block.err")
    assert result.returncode == 0, result.stdout + result.stderr + logs
    bootstrap = yaml.safe_load((tmp_path / "envoy.yaml").read_text())
    (cluster,) = [
        c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "aigateway-extproc"
    ]
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for group in cluster["load_assignment"]["endpoints"]
        for e in group["lb_endpoints"]
    ]
    assert ports == [1063, 1064, 1065, 1066]


# Shell blocks no test runs, and why; every other one is run above.
NOT_RUN = {
    "make up      # creates .venv": "make up's command is what the tour test starts",
    "make bench": "minutes of load; `make bench` is its own check",
    "make test                   # everything": "this is the test suite itself",
    "ANTHROPIC_BASE_URL=": "starts Claude Code's interactive CLI (from npm);"
    " tests/e2e/test_claude_code.py replays the requests it sends",
}


def test_every_shell_block_is_run_or_says_why() -> None:
    run_by_tests = {
        blocks("sh", section("A five-minute tour"))[0],
        blocks("sh", section("Running behind your own Envoy"))[0],
        blocks("sh", section("Performance").split("### More than one core", 1)[1])[0],
        blocks("sh", section("A scrape example"))[0],
    }
    for block in blocks("sh"):
        if block in run_by_tests:
            continue
        assert any(block.startswith(start) for start in NOT_RUN), block
