"""The shared bounded map: least recently used out first, by entries and by bytes, safe across threads."""
import threading

import pytest

from engine.runtime.bounded import BoundedLRU


def test_least_recently_used_leaves_first():
    store = BoundedLRU(2)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1          # "a" is now the most recently used
    store.put("c", 3)
    assert "b" not in store and store.get("a") == 1 and store.get("c") == 3
    assert store.get("b", "missing") == "missing"


def test_bytes_bound_keeps_the_newest_entry_even_if_too_big():
    store = BoundedLRU(10, max_bytes=100)
    store.put("a", "x", size=60)
    store.put("b", "y", size=60)        # 120 > 100: "a" goes
    assert "a" not in store and store.total_bytes == 60
    store.put("huge", "z", size=500)    # bigger than the bound on its own: kept, the rest go
    assert len(store) == 1 and store.get("huge") == "z" and store.total_bytes == 500


def test_replacing_a_key_counts_its_bytes_once():
    store = BoundedLRU(10, max_bytes=100)
    store.put("a", 1, size=40)
    store.put("a", 2, size=50)
    assert store.total_bytes == 50 and store.get("a") == 2


def test_many_threads_keep_the_bound():
    store = BoundedLRU(8)

    def fill(offset):
        for i in range(500):
            store.put((offset, i), i)
            store.get((offset, i - 1))

    threads = [threading.Thread(target=fill, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 8


def test_needs_room_for_one_entry():
    with pytest.raises(ValueError):
        BoundedLRU(0)
