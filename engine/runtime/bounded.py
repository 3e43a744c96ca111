"""A thread-safe map that keeps only its most recently used entries.

Every reader's session runs on its own thread, and many results are worth sharing between them (a perplexity,
a built index, a figure) but not worth keeping forever. One small LRU map serves them all: bounded in entries
and, when the caller gives sizes, in bytes; the newest entry is always kept, however big.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable


class BoundedLRU:
    def __init__(self, max_entries: int, max_bytes: int | None = None):
        if max_entries < 1:
            raise ValueError("a bounded map keeps at least one entry")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The value for `key` (now the most recently used), or `default`."""
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any, size: int = 0) -> None:
        """Keep `value` under `key` as the most recently used entry; the least recently used go past the bounds."""
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.max_entries
                                            or (self.max_bytes is not None and self._bytes > self.max_bytes)):
                self._bytes -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes
