"""Attention pages on a 64-token text: the engine calls, the first render of each page (a new text, so the
forward pass runs) and a layer/head/query change (the forward pass comes from the cache), timed server-side
through AppTest reruns. Targets from the issue: first render < 1.5 s, layer/head change < 300 ms."""
from __future__ import annotations

import itertools
import os
import time

import torch

from engine.inside.attention import attention_step, capture, head_stats, pooled
from engine.tokens.offsets import token_ids
from tests.bench.timing import p50_p95_ms, timed

BASE = ("The old lighthouse keeper climbed the stairs every evening, lit the lamp, and watched the ships pass "
        "the rocks below. One stormy night a small boat lost its way, and he rang the bell until dawn.")


def text_of_64_tokens(lm, salt: str = "") -> str:
    words = (salt + " " + BASE + " " + BASE).split()
    text = ""
    for w in words:
        candidate = f"{text} {w}".strip()
        if len(token_ids(lm, candidate)) > 64:
            break
        text = candidate
    return text


def _open(slug: str, params: dict):
    """An AppTest on the page with its navigation registered; returns (app, seconds of the page run alone)."""
    from tests.pages import ROOT
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(f"app_pages/{slug.replace('-', '_')}.py")
    started = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise RuntimeError([e.value for e in at.exception])
    return at, seconds


def _first_renders(lm, slug: str, runs: int) -> list[float]:
    times = []
    for n in range(runs):
        text = text_of_64_tokens(lm, salt=f"Run {n} of {slug}.")   # a text no cache has seen
        _, seconds = _open(slug, {"text": text})
        times.append(seconds)
    return times


def _changes(slug: str, text: str, moves) -> list[float]:
    at, _ = _open(slug, {"text": text})
    times = []
    for key, value in moves:
        started = time.perf_counter()
        at.slider(key=key).set_value(value).run()
        times.append(time.perf_counter() - started)
    return times


def run(lm) -> list[tuple[str, str]]:
    text = text_of_64_tokens(lm)
    n = len(token_ids(lm, text))
    rows = [("text length (tokens)", str(n)),
            ("machine load average (1 min) / CPUs", f"{os.getloadavg()[0]:.1f} / {os.cpu_count()}")]

    rows.append((f"engine: forward, all attentions + hidden states ({torch.get_num_threads()} threads)",
                 p50_p95_ms(timed(lambda: capture(lm, text), repeat=10))))
    # On a busy machine torch's intra-op threads fight other processes; one thread is often steadier.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rows.append(("engine: the same forward on 1 torch thread", p50_p95_ms(timed(
            lambda: capture(lm, text), repeat=10))))
    finally:
        torch.set_num_threads(threads)
    cap = capture(lm, text)
    cells = itertools.cycle([(l, h, q) for l in (0, 9, 19, 29) for h in (0, 4, 8) for q in (n - 1, n // 2)])
    rows.append(("engine: one worked row (layer, head, query) from cached states", p50_p95_ms(timed(
        lambda: attention_step(lm, cap, *next(cells)), repeat=24))))
    rows.append(("engine: statistics of all 270 heads", p50_p95_ms(timed(lambda: head_stats(cap.attentions)))))
    rows.append(("engine: 270 thumbnails pooled to 16 x 16", p50_p95_ms(timed(lambda: pooled(cap.attentions, 16)))))
    worst = max(attention_step(lm, cap, l, h, n - 1).max_abs_difference for l in range(30) for h in range(9))
    rows.append(("hand-computed rows vs model rows, all 270 heads, max |diff|", f"{worst:.1e}"))

    _open("self-attention", {"text": "Warm-up: load the model into the app's cache."})   # one-off, not timed
    rows.append(("self-attention page: first render, new 64-token text", p50_p95_ms(
        _first_renders(lm, "self-attention", 5))))
    moves = [("layer", 5), ("head", 2), ("query", 30), ("layer", 22), ("head", 7), ("query", 12),
             ("layer", 1), ("head", 9), ("query", 64), ("layer", 14)]
    rows.append(("self-attention page: layer/head/query change (cached pass)", p50_p95_ms(
        _changes("self-attention", text, moves))))
    rows.append(("multi-head page: first render, new 64-token text", p50_p95_ms(
        _first_renders(lm, "multi-head-attention", 5))))
    rows.append(("multi-head page: layer/head change (cached pass)", p50_p95_ms(
        _changes("multi-head-attention", text, [(k, v) for k, v in moves if k != "query"]))))
    return rows
