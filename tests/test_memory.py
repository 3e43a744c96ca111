"""The heap helpers work on this glibc system, and a trim really returns freed memory to the system."""
import ctypes

import psutil

from engine.runtime.memory import limit_malloc_arenas, trim_heap


def test_arena_cap_takes_effect():
    assert limit_malloc_arenas() is True


def test_trim_returns_freed_heap_memory_and_is_throttled():
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # Many small blocks (below the mmap threshold) live on the heap; freed, they stay resident until trimmed.
    # A block kept above them pins the heap's top, as live objects do in a server, so free() alone gives
    # nothing back; malloc_trim releases the free pages below it.
    blocks = [libc.malloc(64 * 1024) for _ in range(3000)]   # ~190 MB
    pin = libc.malloc(64 * 1024)
    for b in blocks:
        ctypes.memset(b, 1, 64 * 1024)
    for b in blocks:
        libc.free(b)
    before = psutil.Process().memory_info().rss
    assert trim_heap(min_interval_s=0) is True
    after = psutil.Process().memory_info().rss
    assert before - after > 100 * 2**20, (before, after)
    assert trim_heap(min_interval_s=3600) is False   # just ran: throttled
    libc.free(pin)
