"""Foundation figures: cold start, next-token latency, decode speed, resident memory."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from tests.bench.timing import p50_p95_ms

PROMPTS_32 = [f"Prompt number {i}: the quick brown fox jumps over the lazy dog while the farmer watches "
              f"the sheep in the green field near the old stone wall by the" for i in range(12)]

MEMORY_PROBE = """
import psutil, os
from engine.model.live_model import load_live_model
from engine.model.encoder import load_encoder, embed_sentences
from engine.decoding.generation import next_token_distribution
lm = load_live_model(); enc = load_encoder()
next_token_distribution(lm, "warm up"); embed_sentences(enc, ["warm up"])
print(psutil.Process(os.getpid()).memory_info().rss)
"""


def cold_start_seconds(cache_dir: str | None) -> float:
    """Process start to the home page drawn in chromium, model card included."""
    from tests.browser import browser_page, free_port, streamlit_server, wait_until_idle

    env_before = os.environ.get("LLM_HANDBOOK_CACHE")
    if cache_dir:
        os.environ["LLM_HANDBOOK_CACHE"] = cache_dir
    try:
        started = time.perf_counter()
        with streamlit_server(free_port(), timeout_s=300) as base, browser_page() as page:
            page.goto(base)
            page.wait_for_selector("text=Load time", timeout=300_000)
            wait_until_idle(page, timeout_ms=300_000)
            return time.perf_counter() - started
    finally:
        if cache_dir:
            if env_before is None:
                os.environ.pop("LLM_HANDBOOK_CACHE", None)
            else:
                os.environ["LLM_HANDBOOK_CACHE"] = env_before


def next_token_page_latency() -> str:
    from tests.pages import open_page

    at = open_page("next-token")
    times = []
    for prompt in PROMPTS_32:
        at.text_area(key="prompt").input(prompt)
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
    return p50_p95_ms(times[1:])


def run(lm):
    from engine.decoding.generation import generate
    from engine.tokens.offsets import token_ids

    figures = [("prompt length used for latency (tokens)", str(len(token_ids(lm, PROMPTS_32[0]))))]
    figures.append(("next-token page rerun after a prompt change (server side)", next_token_page_latency()))
    gen = generate(lm, "The history of the printing press", 64, stop_at_eos=False)
    figures.append(("decode speed with the KV cache (64 tokens)", f"{gen.tokens_per_second:.1f} tokens/s"))
    rss = int(subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1])
    figures.append(("resident memory, SmolLM2 + MiniLM loaded", f"{rss / 2**20:.0f} MiB"))
    figures.append(("cold start to first rendered page, cache built", f"{cold_start_seconds(None):.1f} s"))
    with tempfile.TemporaryDirectory() as empty:
        figures.append(("cold start to first rendered page, no cache (builds it)",
                        f"{cold_start_seconds(empty):.1f} s"))
    return figures
