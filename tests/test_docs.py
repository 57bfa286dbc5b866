"""The repository explains itself: the docs site (with its API reference from the
docstrings) builds without a warning, and comments point only at documents (and
sections) that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (
    "extproc",
    "instrumentation",
    "translators",
    "mock_backend",
    "aigateway",
    "examples",
    "benchmarks",
    "tests",
)


def test_make_docs_builds_the_site_strictly() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^docs:.*\n\t(.+)$", makefile, re.M)[1]  # type: ignore[index]
    assert recipe == "NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict"
    assert "site/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_site_builds_without_warnings(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    # Every page of docs/ is in the nav, and the nav names no page that is missing.
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = {page for entry in config["nav"] for page in entry.values()}
    assert nav == {p.name for p in (ROOT / "docs").glob("*.md")}
    for page in nav:
        name = page.removesuffix(".md")
        assert (tmp_path / ("index.html" if name == "index" else f"{name}/index.html")).is_file()
    # The API reference documents the public package roots and their members.
    api = (tmp_path / "api" / "index.html").read_text()
    for root in ("aigateway.extproc", "aigateway.extproc.gateway", "aigateway.instrumentation"):
        assert f'id="{root}"' in api, root
    for name in ("Processor", "ProcessorWrapper", "Result", "ImmediateResponse", "Outcome"):
        assert f'id="aigateway.extproc.{name}"' in api, name
    assert 'id="aigateway.extproc.gateway.serve"' in api
    assert 'id="aigateway.instrumentation.InstrumentedProcessor"' in api
    # The pages the site shares with the README are included, not left as markers.
    started = (tmp_path / "getting-started" / "index.html").read_text()
    assert "--8&lt;--" not in started and "chat.completions.create" in started


def test_comments_cite_only_documents_in_the_repository() -> None:
    docs = {path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").glob("*.md")}
    headings = {doc: set(re.findall(r"^#+ (.+)$", (ROOT / doc).read_text(), re.M)) for doc in docs}
    cited = re.compile(r"(docs/[\w-]+\.md|README)(?:, | \()\"?([A-Z][\w \n`:-]+)\"?")
    sections_cited = 0
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert "DESIGN" + " §" not in text and "DESIGN" + ".md" not in text, (
                f"{path} cites a design document that is not in the repository"
            )
            for doc in re.findall(r"docs/[\w-]+\.md", text):
                assert doc in headings, f"{path} names {doc}, which is not a page of docs/"
            for doc, section in cited.findall(text):
                assert doc != "README", f"{path} cites the README's {section!r}: cite docs/"
                assert " ".join(section.split()) in headings[doc], (path, doc, section)
                sections_cited += 1
    assert sections_cited >= 20  # the pattern still finds the citations the code makes
