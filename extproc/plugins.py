"""Loading user wrappers named on the command line (``--wrap MODULE:NAME`` or
``--wrap path/to/file.py:NAME``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from extproc.router import ProcessorWrap


class PluginError(Exception):
    """A ``--wrap`` that cannot be loaded; the message says which and why."""


def load_wrap(spec: str) -> ProcessorWrap:
    """The callable ``spec`` names: it takes a Processor and returns one (a
    ``ProcessorWrapper`` subclass is such a callable)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise PluginError(f"--wrap {spec!r}: expected MODULE:NAME or FILE.py:NAME")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise PluginError(f"--wrap {spec!r}: no file {path}")
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # so the file can import the modules beside it
            module_name = f"aigateway_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise PluginError(f"--wrap {spec!r}: cannot load {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")  # modules beside the current directory, as python -m does
            module = importlib.import_module(target)
    except PluginError:
        raise
    except Exception as exc:  # an import runs arbitrary code: report any failure in one line
        raise PluginError(f"--wrap {spec!r}: cannot import {target}: {exc!r}") from None
    wrap = getattr(module, name, None)
    if wrap is None or not callable(wrap):
        raise PluginError(f"--wrap {spec!r}: {target} has no callable {name!r}")
    return wrap  # type: ignore[no-any-return]
