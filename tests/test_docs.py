"""The repository explains itself: the API reference builds from the docstrings without
a warning, and comments point only at documents (and sections) that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("extproc", "instrumentation", "translators", "aigateway", "examples", "tests")


def test_the_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    modules = shlex.split(re.search(r"^DOCS_MODULES = (.+)$", makefile, re.M)[1])  # type: ignore[index]
    built = subprocess.run(
        [sys.executable, "-W", "error", "-m", "pdoc", "-o", str(tmp_path), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    assert built.stderr == ""
    pages = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.html")}
    assert {
        "aigateway/extproc.html",
        "aigateway/extproc/gateway.html",
        "aigateway/instrumentation.html",
        "aigateway/translators.html",
    } <= pages
    framework = (tmp_path / "aigateway" / "extproc.html").read_text()
    for name in ("Processor", "ProcessorWrapper", "Result", "ImmediateResponse", "Outcome"):
        assert f'id="{name}"' in framework, name


def test_comments_cite_only_documents_in_the_repository() -> None:
    headings = {
        doc: set(re.findall(r"^#+ (.+)$", (ROOT / doc).read_text(), re.M))
        for doc in ("docs/architecture.md", "README.md")
    }
    cited = re.compile(r"(docs/architecture\.md|README)(?:, | \()\"?([A-Z][\w \n-]+)\"?")
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert "DESIGN" + " §" not in text and "DESIGN" + ".md" not in text, (
                f"{path} cites a design document that is not in the repository"
            )
            for doc, section in cited.findall(text):
                doc = "README.md" if doc == "README" else doc
                assert " ".join(section.split()) in headings[doc], (path, doc, section)
