"""``--wrap`` loading: modules, files (importing their siblings), and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from aigateway.extproc.framework.processor import Processor, ProcessorWrapper
from aigateway.extproc.ops.plugins import PluginError, load_wrap


def test_file_plugin_can_import_its_siblings(tmp_path: Path) -> None:
    (tmp_path / "helper_for_plugin_test.py").write_text("SUFFIX = 'ok'\n")
    (tmp_path / "my_wrapper.py").write_text(
        "from aigateway.extproc import ProcessorWrapper\n"
        "from helper_for_plugin_test import SUFFIX\n"
        "class Tagged(ProcessorWrapper):\n"
        "    tag = SUFFIX\n"
    )
    wrap = load_wrap(f"{tmp_path / 'my_wrapper.py'}:Tagged")
    wrapped = wrap(Processor())
    assert isinstance(wrapped, ProcessorWrapper)
    assert wrapped.tag == "ok"  # type: ignore[attr-defined]


def test_module_plugin() -> None:
    assert load_wrap("aigateway.extproc.framework.processor:ProcessorWrapper") is ProcessorWrapper


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "expected MODULE:NAME"),
        ("no.such.module:X", "cannot import no.such.module"),
        ("aigateway.extproc.framework.processor:NoSuchThing", "has no callable 'NoSuchThing'"),
        ("/nonexistent/file.py:X", "no file"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        load_wrap(spec)
