"""KV cache: decode speed with and without the cache, the speed-up, and the cache's measured size at 1k tokens."""
from __future__ import annotations

import time

from engine.serving.kv_cache import compare_generation, kv_cache_bytes, measure_cache_growth
from engine.tokens.offsets import token_ids
from tests.bench.timing import p50_p95_ms

PROMPT = ("The printing press changed Europe in a single lifetime. Around 1450 Johannes Gutenberg combined movable "
          "metal type, an oil-based ink and a wooden screw press into a system that could print hundreds of "
          "identical pages a day. Within fifty years presses were running in more than two hundred cities, the "
          "price of books fell sharply, and reading spread far beyond monasteries and universities.")


def run(lm) -> list[tuple[str, str]]:
    ids = token_ids(lm, PROMPT)
    rows: list[tuple[str, str]] = [("prompt length", f"{len(ids)} tokens")]
    for new_tokens in (32, 128):
        result = compare_generation(lm, ids, new_tokens)
        cached, uncached = result.cached, result.uncached
        rows += [
            (f"{new_tokens} new tokens: decode with cache", f"{cached.decode_tokens_per_second:.1f} tokens/s"),
            (f"{new_tokens} new tokens: decode without cache", f"{uncached.decode_tokens_per_second:.1f} tokens/s"),
            (f"{new_tokens} new tokens: total time with / without",
             f"{cached.total_seconds:.2f} s / {uncached.total_seconds:.2f} s"),
            (f"{new_tokens} new tokens: speed-up (total time)", f"{result.speedup:.2f}x"),
            (f"{new_tokens} new tokens: decode step with cache", p50_p95_ms(cached.step_seconds[1:])),
            (f"{new_tokens} new tokens: last step without cache",
             f"{1000 * uncached.step_seconds[-1]:.0f} ms ({uncached.tokens_fed[-1]} tokens fed)"),
            (f"{new_tokens} new tokens: identical greedy tokens", str(result.identical)),
        ]
    started = time.perf_counter()
    growth = measure_cache_growth(lm, ids, [1024])
    seconds = time.perf_counter() - started
    rows += [
        ("cache bytes at 1,024 tokens, measured", f"{growth.measured_bytes[-1]:,} B "
                                                   f"({growth.measured_bytes[-1] / 1e6:.2f} MB)"),
        ("cache bytes at 1,024 tokens, formula", f"{kv_cache_bytes(growth.spec, growth.element_size, 1024):,.0f} B"),
        ("prefill of 1,024 tokens into a DynamicCache", f"{seconds:.2f} s"),
    ]
    return rows
