"""Temperature and top-k/top-p pages: slider reruns (forward pass cached) and the forward pass they avoid."""
from __future__ import annotations

import itertools

from engine.decoding.generation import next_token_distribution
from engine.decoding.sampling import sampling_filter
from engine.tokens.offsets import decode, token_ids
from tests.bench.timing import p50_p95_ms, timed
from tests.pages import open_page

SENTENCE = "The old lighthouse keeper climbed the stairs every evening to light the lamp for passing ships. "


def prompt_of(lm, tokens: int) -> str:
    ids = token_ids(lm, SENTENCE * 8)[:tokens]
    return decode(lm, ids)


def slider_reruns(slug: str, key: str, values: list, repeat: int = 20) -> list[float]:
    """AppTest reruns of a page with a new slider value each time; the first run (model, forward) is untimed."""
    at = open_page(slug)
    cycle = itertools.cycle(values)
    return timed(lambda: at.slider(key=key).set_value(next(cycle)).run(), repeat=repeat, warmup=2)


def run(lm) -> list[tuple[str, str]]:
    text = prompt_of(lm, 64)
    n = len(token_ids(lm, text))
    dist = next_token_distribution(lm, text)
    temps = [round(0.05 * i, 2) for i in range(1, 41)]
    return [
        ("temperature page: rerun with a new T (AppTest, target < 150 ms)",
         p50_p95_ms(slider_reruns("temperature", "t", temps[::3]))),
        ("top-k-top-p page: rerun with a new p (AppTest)",
         p50_p95_ms(slider_reruns("top-k-top-p", "p", [0.5, 0.6, 0.7, 0.8, 0.95]))),
        (f"next_token forward pass, {n}-token prompt (what the cache avoids)",
         p50_p95_ms(timed(lambda: next_token_distribution(lm, text), repeat=10))),
        ("sampling_filter (T, top-k, top-p, min-p) on 49,152 logits",
         p50_p95_ms(timed(lambda: sampling_filter(dist.logits, 0.8, 40, 0.95, 0.05), repeat=50))),
    ]
