"""Loading user code named on the command line: ``--wrap MODULE:NAME`` and ``--routes
MODULE:NAME`` (or ``path/to/file.py:NAME``; a file can import the modules beside it)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from aigateway.extproc.framework.router import Wrap
from aigateway.extproc.gateway.app import RouteOverrides


class PluginError(Exception):
    """A ``--wrap`` or ``--routes`` that cannot be loaded; the message says which and why."""


def load_callable(spec: str, flag: str = "--wrap") -> Any:
    """The callable ``spec`` (``MODULE:NAME`` or ``FILE.py:NAME``) names."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise PluginError(f"{flag} {spec!r}: expected MODULE:NAME or FILE.py:NAME")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise PluginError(f"{flag} {spec!r}: no file {path}")
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)  # so the file can import the modules beside it
            module_name = f"aigateway_plugin_{path.stem}"
            module = sys.modules.get(module_name)
            if module is None:
                module_spec = importlib.util.spec_from_file_location(module_name, path)
                if module_spec is None or module_spec.loader is None:
                    raise PluginError(f"{flag} {spec!r}: cannot load {path}")
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
        raise PluginError(f"{flag} {spec!r}: cannot import {target}: {exc!r}") from None
    found = getattr(module, name, None)
    if found is None or not callable(found):
        raise PluginError(f"{flag} {spec!r}: {target} has no callable {name!r}")
    return found


def load_wrap(spec: str) -> Wrap:
    """A ``--wrap``: a callable from a Processor to a Processor (a ``ProcessorWrapper``
    subclass is one)."""
    wrap: Wrap = load_callable(spec, "--wrap")
    return wrap


def load_routes(spec: str) -> RouteOverrides:
    """A ``--routes``: a callable from the routing table to ``{path: processor factory}``
    for the paths it takes over."""
    routes: RouteOverrides = load_callable(spec, "--routes")
    return routes
