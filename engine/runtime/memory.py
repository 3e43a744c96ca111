"""Keep the server's resident memory bounded under many readers (glibc malloc, Linux).

Streamlit runs every script run in a new thread. glibc gives threads their own malloc arenas (up to 8 per
core) and rarely returns freed arena memory to the system, so a server that has served thousands of runs
holds on to memory it no longer uses. Two remedies, both no-ops where glibc is absent:
- cap the arenas (like MALLOC_ARENA_MAX=2, but set from inside the process, before the readers come);
- `trim_heap()` hands free memory at the top of each arena back to the system (malloc_trim).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

M_ARENA_MAX = -8   # mallopt parameter number, from glibc's malloc.h
ARENAS = 2

_libc = None
_last_trim = 0.0
_trim_lock = threading.Lock()


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads created from now on. True if it took effect."""
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, int(arenas)) == 1)


def trim_heap(min_interval_s: float = 5.0) -> bool:
    """Return free heap memory to the system, at most once per `min_interval_s`. True if it ran."""
    global _last_trim
    libc = _glibc()
    if not libc:
        return False
    with _trim_lock:
        now = time.monotonic()
        if now - _last_trim < min_interval_s:
            return False
        _last_trim = now
    libc.malloc_trim(0)
    return True


_trimmer: threading.Thread | None = None


def start_heap_trimmer(every_s: float = 10.0) -> None:
    """Trim the heap every `every_s` seconds in a daemon thread (once per process; later calls do nothing)."""
    global _trimmer
    with _trim_lock:
        if _trimmer is not None or not _glibc():
            return

        def loop() -> None:
            while True:
                time.sleep(every_s)
                trim_heap(min_interval_s=0)

        _trimmer = threading.Thread(target=loop, name="heap-trimmer", daemon=True)
        _trimmer.start()
