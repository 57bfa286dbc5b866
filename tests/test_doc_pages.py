"""The docs (README.md and every page of docs/) match the code: their config snippets
validate, the CLI synopsis names only real flags, the metric table is the exported set,
the PromQL parses, the paths they name exist, and every shell and Python block runs as
written (or says why not)."""

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
from aigateway.instrumentation.metrics import COST, FAMILIES, LIMITS_STORE_ERRORS, RATE_LIMITED

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

#: Every page, by its path in the repository: the README, then docs/ (the site's pages).
PAGES = {
    path.relative_to(REPO).as_posix(): path.read_text()
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
}


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


def blocks(lang: str, text: str | None = None) -> list[str]:
    """The ``lang`` blocks of ``text``, or of every page."""
    texts = [text] if text is not None else list(PAGES.values())
    return [body for t in texts for block_lang, body in fenced(t) if block_lang == lang]


def section(page: str, title: str) -> str:
    """The section of ``page`` under the heading ``title`` (any level), through its
    subsections, up to the next heading of its level or above; fenced code is not
    searched for headings (a shell comment is not one)."""
    lines = PAGES[page].splitlines(keepends=True)
    start: int | None = None
    level = 0
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        heading = None if in_fence else re.match(r"^(#+) (.+)$", line)
        if heading is None:
            continue
        if start is None and heading[2].strip() == title:
            start, level = i, len(heading[1])
        elif start is not None and len(heading[1]) <= level:
            return "".join(lines[start:i])
    assert start is not None, f"{page} has no section {title!r}"
    return "".join(lines[start:])


def test_yaml_config_snippets_validate() -> None:
    checked = 0
    for text in blocks("yaml"):
        doc: Any = yaml.safe_load(text)
        if isinstance(doc, dict) and "backends" in doc:
            parse_config(doc, "docs")
        elif isinstance(doc, list) and doc and "schema" in doc[0]:
            # A backend snippet: it must validate as a backend of some config.
            names = [b["name"] for b in doc]
            parse_config({"backends": doc, "models": [{"name": "m", "backend": names[0]}]}, "docs")
        else:
            continue
        checked += 1
    assert checked >= 5


def test_cli_synopsis_names_real_flags() -> None:
    text = next(
        b
        for b in blocks("", section("docs/configuration.md", "Command line"))
        if "aigateway serve" in b
    )
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
    table = section("docs/metrics.md", "Families")
    named = set(re.findall(r"^\| `(aigateway_[a-z_]+)`", table, flags=re.M))
    counters = {"aigateway_requests", "aigateway_model_tokens", "aigateway_backend_attempts"}
    exported = {n + "_total" if n in counters else n for n in FAMILIES}
    optional = {COST, RATE_LIMITED, LIMITS_STORE_ERRORS}  # with prices, with limits rules
    assert named == exported | {name + "_total" for name in optional}


def test_promql_examples_are_valid(tmp_path: Path) -> None:
    queries = [q for b in blocks("promql") for q in re.split(r"\n(?=#)", b.strip())]
    rules = []
    for i, query in enumerate(queries):
        expr = "\n".join(line for line in query.splitlines() if not line.startswith("#"))
        rules.append({"record": f"docs:query_{i}", "expr": expr})
    assert len(rules) >= 5
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "docs", "rules": rules}]}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("target", ["up", "test"])
def test_quick_start_commands_exist(target: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, flags=re.M)
    assert f"make {target}" in section("README.md", "Quick start")


def test_the_readme_fits_on_a_few_screens() -> None:
    # The reference lives in docs/; the README is the front page (what, quick start, links).
    assert len(PAGES["README.md"].encode()) <= 15 * 1024


@pytest.mark.parametrize("part", ["intro", "quick-start", "tour"])
def test_the_site_includes_the_readme_parts_it_shares(part: str) -> None:
    # One copy of the introduction, the quick start and the tour: the README's, which the
    # site's pages include (pymdownx.snippets) between these markers.
    readme = PAGES["README.md"]
    assert f"<!-- --8<-- [start:{part}] -->" in readme
    assert f"<!-- --8<-- [end:{part}] -->" in readme
    assert any(f'--8<-- "README.md:{part}"' in text for text in PAGES.values())


# Paths the pages name, in backquotes; docs/architecture.md is left out, as it sketches
# layouts while they are being built.
NAMED_PATH = re.compile(
    r"`((?:benchmarks|docs|examples|extproc|instrumentation|tests|translators)/[\w./-]*)`"
)


def test_every_path_the_pages_name_exists() -> None:
    for page, text in PAGES.items():
        if page == "docs/architecture.md":
            continue
        for path in NAMED_PATH.findall(text):
            if "{" not in path:  # `benchmarks/results/latest.{json,md}`: a pattern
                assert (REPO / path).exists(), f"{page} names {path}"


def test_every_test_the_pages_name_exists() -> None:
    # docs/reliability.md says which test holds each guarantee, as `tests/...py::name`.
    named = {m for text in PAGES.values() for m in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)}
    assert named
    for path, name in named:
        source = (REPO / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{path} has no {name}"


# --- the snippets run as written ------------------------------------------------------
#
# Each runs verbatim in a network and PID namespace of its own (unshare): the pages' fixed
# ports (10000, 9190, 8000...) are then this test's alone, a `make up` in another
# terminal is not disturbed, and every process the snippet starts ends with the test.

#: The shell blocks the tests below run, by (page, section): the first block of each.
RUN = {
    "tour": ("README.md", "A five-minute tour"),
    "own-envoy": ("docs/operations.md", "Running behind your own Envoy"),
    "workers": ("docs/operations.md", "More than one core: `--workers`"),
    "scrape": ("docs/metrics.md", "A scrape example"),
}


def shell_block(name: str) -> str:
    return blocks("sh", section(*RUN[name]))[0]


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
    tour = shell_block("tour")
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
    block = shell_block("own-envoy")
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
    part = section(*RUN["scrape"])
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


PYTHON_BLOCKS = [(page, body) for page, text in PAGES.items() for body in blocks("python", text)]


@pytest.mark.parametrize(
    "snippet", [body for _, body in PYTHON_BLOCKS], ids=[page for page, _ in PYTHON_BLOCKS]
)
async def test_every_python_block_runs_as_written(snippet: str, tmp_path: Path) -> None:
    # Every Python block of the pages is a wrapper, RequireTenant; loaded as `--wrap` loads
    # it, it must refuse a chat request without the header and pass one with it.
    from aigateway.extproc import Headers, ImmediateResponse, Processor
    from aigateway.extproc.ops.plugins import load_wrap

    (tmp_path / "my_policy.py").write_text(snippet)
    wrap = load_wrap(f"{tmp_path / 'my_policy.py'}:RequireTenant")
    chat = Headers([(":method", "POST"), (":path", "/v1/chat/completions")])
    with pytest.raises(ImmediateResponse) as refused:
        await wrap(Processor()).on_request_headers(chat)
    assert refused.value.status == 401
    tenant = Headers([*chat.pairs, ("x-tenant", "acme")])
    await wrap(Processor()).on_request_headers(tenant)  # passes to the inner processor


def test_the_pages_have_python_blocks() -> None:
    assert {page for page, _ in PYTHON_BLOCKS} >= {"README.md", "docs/processors.md"}


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_the_workers_snippet_runs_as_written(tmp_path: Path) -> None:
    block = shell_block("workers")
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
    "make test ": "this is the test suite itself",
    ".venv/bin/python -m benchmarks.instructions": "minutes under valgrind, like make bench",
    "ANTHROPIC_BASE_URL=": "starts Claude Code's interactive CLI (from npm);"
    " tests/e2e/test_claude_code.py replays the requests it sends",
}


def test_every_shell_block_is_run_or_says_why() -> None:
    run_by_tests = {shell_block(name) for name in RUN}
    for page, text in PAGES.items():
        for block in blocks("sh", text):
            if block in run_by_tests:
                continue
            assert any(block.startswith(start) for start in NOT_RUN), (page, block)
