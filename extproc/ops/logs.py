"""Logging setup for the CLI: text for people, JSON lines for log pipelines; and what
native code writes to stderr when a port cannot be had."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

LEVELS = ("debug", "info", "warning", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter stays at warning unless we debug.
    for noisy in ("aiohttp.access", "asyncio", "grpc"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    # google-auth's debug lines carry token requests, and its warnings repeat failures
    # the gateway reports itself in one line.
    logging.getLogger("google").setLevel(logging.ERROR)


class CapturedStderr:
    """File descriptor 2 redirected to a temporary file while the block runs. What was
    written is copied back to stderr afterwards unless ``failed`` is set (a native log
    line for a failure the caller reports itself)."""

    def __init__(self) -> None:
        self.failed = False
        self._file: Any = None
        self._saved = -1

    def __enter__(self) -> CapturedStderr:
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def text(self) -> str:
        self._file.flush()
        self._file.seek(0)
        return str(self._file.read().decode("utf-8", "replace"))

    def __exit__(self, *exc_info: object) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        if not self.failed:
            written = self.text()
            if written:
                sys.stderr.write(written)
                sys.stderr.flush()
        self._file.close()


def _bind_reason(log: str) -> str | None:
    # grpc: "... add_port.cc:83] Failed to add port ... (Error in bind for address
    # '[::1]:1063': Address already in use)"; the last parenthesised clause is the cause.
    match = re.search(r":\s*([^:()]+)\)\s*$", log.strip().splitlines()[-1]) if log.strip() else None
    return match.group(1).strip() if match else None


def bind_explained(add: Callable[[], int], address: str) -> int:
    """A :data:`~aigateway.extproc.framework.server.PortBinder` whose :class:`BindError`
    says why (``Address already in use``...), from the log line grpc's C core writes to
    stderr; that line is held back (the caller reports the failure in its own words)
    and anything else written meanwhile is passed on."""
    # Here, not at the top: every command reads LEVELS, and only serving needs grpc.
    from aigateway.extproc.framework.server import BindError

    with CapturedStderr() as captured:
        try:
            return add()
        except RuntimeError:
            captured.failed = True
            reason = _bind_reason(captured.text()) or "cannot listen there"
            raise BindError(address, reason) from None
