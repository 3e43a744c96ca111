"""Prompt caching (prefix KV reuse) measured on the live model.

A shared prefix (a system prompt, a document) is run once into a transformers DynamicCache and kept. Each
reader's request then starts from a COPY of that cache and runs only its own suffix; the same request is also
run from scratch (prefix + suffix). Both continue greedily, so their tokens can be compared one by one, and
both are timed. The copy matters: a DynamicCache grows in place when a suffix is fed into it, so a cache shared
between two requests would carry the first request's tokens into the second.

The cache's size is read from its real tensors (engine.serving.kv_cache.cache_tensor_bytes), never computed.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import torch

from engine.runtime.gate import model_work
from engine.serving.kv_cache import cache_tensor_bytes
from engine.model.live_model import LiveModel

MAX_READERS = 4
MAX_NEW_TOKENS = 32


def shared_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens two requests share: what a prefix cache can reuse (it matches tokens, not text)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefill_share_saved(prefix_tokens: int, suffix_tokens: int) -> float:
    """Share of a request's prefill tokens that a cached prefix spares: prefix / (prefix + suffix)."""
    total = prefix_tokens + suffix_tokens
    return prefix_tokens / total if total else 0.0


def copy_cache(cache):
    """An independent copy of a DynamicCache (every layer's key and value tensors cloned)."""
    return copy.deepcopy(cache)


def new_cache(lm: LiveModel):
    from transformers import DynamicCache

    return DynamicCache(config=lm.model.config)


def _feed(lm: LiveModel, ids: list[int], cache) -> int:
    """Feed `ids` into `cache` (it grows in place); the greedy next token."""
    out = lm.model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
    return int(torch.argmax(out.logits[0, -1]))


@dataclass(frozen=True)
class Continuation:
    new_ids: list[int]
    first_token_s: float     # from the start of the request to its first token (includes the copy, if any)
    total_s: float           # first token plus the remaining decode steps


def greedy_continuation(lm: LiveModel, cache, feed_ids: list[int], new_tokens: int,
                        copy_from=None) -> Continuation:
    """Greedy decoding of `new_tokens` tokens after feeding `feed_ids` into `cache`.

    With `copy_from`, `cache` is ignored and the request starts from a copy of `copy_from`, the copy timed as
    part of its time to first token (a server pays it too, or an equivalent bookkeeping step).
    Call inside `model_work()`.
    """
    started = time.perf_counter()
    if copy_from is not None:
        cache = copy_cache(copy_from)
    next_id = _feed(lm, feed_ids, cache)
    first = time.perf_counter() - started
    new_ids = [next_id]
    while len(new_ids) < new_tokens:
        new_ids.append(_feed(lm, [new_ids[-1]], cache))
    return Continuation(new_ids, first, time.perf_counter() - started)


@dataclass(frozen=True)
class ReaderRun:
    """One reader's request, run from the cached prefix (warm) and from scratch (cold)."""
    suffix_ids: list[int]
    warm: Continuation
    cold: Continuation

    @property
    def identical(self) -> bool:
        return self.warm.new_ids == self.cold.new_ids

    @property
    def first_token_speedup(self) -> float:
        return self.cold.first_token_s / self.warm.first_token_s if self.warm.first_token_s > 0 else 0.0


@dataclass(frozen=True)
class PrefixReuse:
    prefix_ids: list[int]
    prefix_prefill_s: float          # the one-off cost of filling the shared cache
    cache_bytes: int                 # read from the cache tensors after the prefix
    cache_tokens: int                # tokens held by the cache (layer 0 key tensor's length)
    key_shape: tuple[int, ...]       # one layer's key tensor: batch x kv heads x tokens x head size
    layers: int
    dtype: str
    readers: list[ReaderRun]
    prefix_cache_unchanged: bool     # after every reader ran, the kept cache still holds only the prefix
    requested_readers: int
    measured_at: float

    @property
    def stopped_early(self) -> bool:
        return len(self.readers) < self.requested_readers

    @property
    def all_identical(self) -> bool:
        return all(r.identical for r in self.readers)

    @property
    def warm_first_token_s(self) -> float:
        return sum(r.warm.first_token_s for r in self.readers)

    @property
    def cold_first_token_s(self) -> float:
        return sum(r.cold.first_token_s for r in self.readers)

    def saved_shares(self) -> list[float]:
        return [prefill_share_saved(len(self.prefix_ids), len(r.suffix_ids)) for r in self.readers]


Progress = Callable[[int, int, str], None]   # (readers done, readers, message)


def compare_prefix_reuse(lm: LiveModel, prefix_ids: list[int], suffixes: list[list[int]], new_tokens: int,
                         on_progress: Progress | None = None, time_budget_s: float | None = None,
                         should_stop: Callable[[], bool] | None = None) -> PrefixReuse:
    """Run the prefix once into a kept cache, then every suffix from a copy of it and from scratch, timed.

    Readers alternate warm then cold, each pair in one pass through the CPU gate, so both paths see the same
    load. A time budget or a stop request ends the runs between readers (after at least one).
    """
    if not prefix_ids:
        raise ValueError("the shared prefix is empty")
    suffixes = [list(s) for s in suffixes if s][:MAX_READERS]
    if not suffixes:
        raise ValueError("no reader's question to answer")
    new_tokens = max(1, min(int(new_tokens), MAX_NEW_TOKENS))
    with model_work():
        # Untimed warm-up of both paths: the first calls in a process pay one-off costs.
        warm_up = new_cache(lm)
        _feed(lm, prefix_ids + suffixes[0], warm_up)
        _feed(lm, suffixes[0][-1:], copy_cache(warm_up))
        del warm_up
        started = time.perf_counter()
        kept = new_cache(lm)
        _feed(lm, list(prefix_ids), kept)
        prefix_prefill_s = time.perf_counter() - started
    reference_keys = kept.layers[-1].keys.clone()   # to prove no reader wrote into the kept cache
    began = time.perf_counter()
    readers: list[ReaderRun] = []
    for i, suffix in enumerate(suffixes):
        out_of_time = time_budget_s is not None and time.perf_counter() - began > time_budget_s
        if readers and (out_of_time or (should_stop is not None and should_stop())):
            break
        if on_progress:
            on_progress(i, len(suffixes), f"Reader {i + 1} of {len(suffixes)}: from the cached prefix, then "
                                          "from scratch")
        with model_work():
            warm = greedy_continuation(lm, None, suffix, new_tokens, copy_from=kept)
            cold = greedy_continuation(lm, new_cache(lm), list(prefix_ids) + suffix, new_tokens)
        readers.append(ReaderRun(suffix, warm, cold))
    if on_progress:
        on_progress(len(readers), len(suffixes), "Done")
    keys = kept.layers[0].keys
    unchanged = (kept.get_seq_length() == len(prefix_ids)
                 and torch.equal(kept.layers[-1].keys, reference_keys))
    return PrefixReuse(prefix_ids=list(prefix_ids), prefix_prefill_s=prefix_prefill_s,
                       cache_bytes=cache_tensor_bytes(kept), cache_tokens=int(keys.shape[-2]),
                       key_shape=tuple(keys.shape), layers=len(kept.layers),
                       dtype=str(keys.dtype).replace("torch.", ""), readers=readers,
                       prefix_cache_unchanged=bool(unchanged), requested_readers=len(suffixes),
                       measured_at=time.time())
