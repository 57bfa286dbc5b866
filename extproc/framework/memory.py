"""Handing freed memory back to the system after large bodies (docs/reliability.md,
"Large bodies").

glibc's malloc keeps what is freed for reuse. Two of its behaviours kept a processor
hundreds of MiB above its baseline after a burst of large bodies (benchmarks/NOTES.md,
"Large bodies"): freed blocks in the heap stay resident until trimmed, and gRPC's
threads allocate from arenas of their own (up to 8 per core), whose free pages a trim
does not give back. So the server uses one arena (mallopt(3), M_ARENA_MAX) and trims
(malloc_trim(3)) once the last large body's stream has ended; while a burst lasts, the
heap is reused. Both are glibc functions, reached through ctypes; elsewhere (musl,
macOS) they are absent and nothing is done."""

from __future__ import annotations

import ctypes
from typing import Any

#: mallopt(3)'s parameter number for M_ARENA_MAX (glibc's malloc.h).
_M_ARENA_MAX = -8


def _libc_function(name: str) -> Any:
    try:
        return getattr(ctypes.CDLL(None), name)  # the process's own symbols: libc's
    except (OSError, AttributeError):
        return None


_MALLOPT = _libc_function("mallopt")
# ctypes releases the GIL during the call: a trim can run on a thread while the event
# loop goes on.
_MALLOC_TRIM = _libc_function("malloc_trim")


def use_one_arena() -> bool:
    """Have every thread allocate from the main arena (call before threads start);
    ``False`` where malloc has no such setting."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(1)))


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system; ``False`` where malloc cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(ctypes.c_size_t(0))
    return True
