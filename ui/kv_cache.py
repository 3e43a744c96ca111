"""Cached KV-cache measurements for the kv-cache page, shared by every session of this server.

Timings are kept by (prompt, new tokens) in a small bounded store rather than `st.cache_data`: the page
must draw a progress bar while measuring, and a user may ask to measure again and replace what is stored.
Only one timing runs at a time, so two visitors do not slow each other's measurement down.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict

import streamlit as st

from engine.kv_cache import CacheComparison, CacheGrowth, StepReport, compare_generation, measure_cache_growth
from engine.tokens import token_ids
from ui.models import lm

MAX_STORED_TIMINGS = 64


class TimingStore:
    """A bounded, thread-safe map (prompt, n) -> CacheComparison, plus one lock for the CPU."""

    def __init__(self, max_entries: int = MAX_STORED_TIMINGS):
        self._items: OrderedDict[tuple[str, int], CacheComparison] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        self.measuring = threading.Lock()

    def get(self, key: tuple[str, int]) -> CacheComparison | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: tuple[str, int], value: CacheComparison) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def timing_store() -> TimingStore:
    return TimingStore()


def stored_timing(prompt: str, new_tokens: int) -> CacheComparison | None:
    return timing_store().get((prompt, int(new_tokens)))


def measure_timing(prompt: str, new_tokens: int, on_step: StepReport | None = None, on_wait=None,
                   again: bool = False, time_budget_s: float | None = None) -> CacheComparison:
    """Time generation with and without the cache now, store it, and return it.

    If another session was measuring the same thing while this one waited, its result is used, unless `again`.
    """
    store = timing_store()
    started_waiting = time.time()
    if not store.measuring.acquire(blocking=False):
        if on_wait:
            on_wait()
        store.measuring.acquire()
    try:
        stored = store.get((prompt, int(new_tokens)))
        if stored is not None and (not again or stored.measured_at >= started_waiting):
            return stored
        model = lm()
        result = compare_generation(model, token_ids(model, prompt), new_tokens, on_step=on_step,
                                    time_budget_s=time_budget_s)
    finally:
        store.measuring.release()
    store.put((prompt, int(new_tokens)), result)
    return result


@st.cache_data(max_entries=64, show_spinner=False)
def cache_growth(prompt: str, points: tuple[int, ...]) -> CacheGrowth:
    model = lm()
    return measure_cache_growth(model, token_ids(model, prompt), list(points))
