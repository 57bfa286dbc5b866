"""The README matches the code: its config snippets validate, its CLI synopsis names only
real flags, its metric table is the exported set, and its PromQL parses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from extproc.cli import _parser
from extproc.config import parse_config
from instrumentation.metrics import FAMILIES

README = (Path(__file__).parent.parent / "README.md").read_text()


def fenced(text: str) -> list[tuple[str, str]]:
    """The fenced code blocks of a markdown text, as (language, body)."""
    out: list[tuple[str, str]] = []
    lang: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            if lang is None:
                lang, body = line[3:].strip(), []
            else:
                out.append((lang, "\n".join(body) + "\n"))
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
    commands = re.split(r"\n(?=aigateway )", text.strip())
    sub = _parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
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
    assert named == exported


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
