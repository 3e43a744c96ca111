"""The paged-attention page: every number shown is recomputed here from the engine (the real answers, the measured
bytes per token), the memory totals reconcile (waste = reserved - used), the block table shown is the allocator's,
and the copy-on-write figures come from the model's real parallel samples."""
import json
import math

import pytest

from engine.serving.batching import request_stream
from engine.runtime.jobs import job_registry
from engine.serving.kv_allocator import (FULL_CONTEXT, MAX_TOKENS, Request, batch_that_fits, memory_timeline, paged_pool_at,
                                 parallel_samples, peak_reserved, reservation)
from engine.serving.kv_cache import kv_bytes_per_token, live_element_size, live_spec
from engine.serving.workload import load_answers
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from ui.text import human_bytes

SAMPLE_TEMPERATURE = 0.8   # the page's


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id]
    assert found, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def requests_for(count: int, seed: int) -> list[Request]:
    shapes = [(a.prompt_tokens, a.output_tokens) for a in load_answers().answers]
    return [Request(r.id, r.prompt_tokens, r.output_tokens) for r in request_stream(shapes, count, math.inf, seed)]


def sampled(at) -> bool:
    return any(m.label == "Memory saved" for m in at.metric)


def check_page(at, lm, count, page, mode, seed, iteration, budget_mb, prompt, n, tokens):
    assert_no_exception(at)
    per_token = kv_bytes_per_token(live_spec(lm), live_element_size(lm))   # = the measured cache, kv-cache page
    assert metric(at, "Per cached token").value == f"{per_token:,.0f} B"
    cap, context = load_answers().max_new_tokens, lm.card.context_length
    requests = requests_for(count, seed)
    reserved = [reservation(r, mode, cap, context) for r in requests]
    tl = memory_timeline(requests, page, reserved)
    assert metric(at, "Slabs: holding tokens").value == f"{tl.contiguous_utilisation:.1%}"
    assert metric(at, "Pages: holding tokens").value == f"{tl.paged_utilisation:.1%}"
    assert metric(at, "Peak KV memory").value == f"{max(tl.contiguous_reserved) * per_token / 1e6:,.1f} MB"
    # Totals reconcile: waste = reserved - used, and the chart's stack adds up to the reservation.
    text = shown_text(at)
    assert (f"contiguous {tl.contiguous_waste:,} token-iterations reserved but empty (= {tl.contiguous_total:,} "
            f"reserved − {tl.used_total:,} used), paged {tl.paged_waste:,}") in text
    assert tl.contiguous_waste == tl.contiguous_total - tl.used_total > tl.paged_waste == tl.paged_total - tl.used_total
    memory = chart(at, "memory_chart")["data"]
    used, future, never, paged = (plotly_array(t["y"]) for t in memory[:4])
    assert used * 1e6 / per_token == pytest.approx(tl.used)
    assert (used + future + never) * 1e6 / per_token == pytest.approx(tl.contiguous_reserved)
    assert paged * 1e6 / per_token == pytest.approx(tl.paged_reserved)
    # The block table shown is the allocator's at the inspected iteration.
    assert at.slider(key="at").value == iteration
    snap = paged_pool_at(requests, page, iteration)
    first = sorted(snap.tables)[0]
    table = at.dataframe[0].value
    assert list(table.iloc[0]) == snap.tables[first] and list(table.iloc[1]) == snap.block_fill[first]
    # The batch that fits the budget.
    many = requests_for(64, seed)
    contiguous, paged_peaks = peak_reserved(many, page, [reservation(r, mode, cap, context) for r in many])
    assert requests_for(count, seed) == many[:count]
    budget_tokens = budget_mb * 1e6 / per_token
    assert metric(at, "Contiguous fits").value == f"{batch_that_fits(contiguous, budget_tokens)} requests"
    assert metric(at, "Paged fits").value == f"{batch_that_fits(paged_peaks, budget_tokens)} requests"
    # Copy-on-write on the model's real samples.
    run_until(at, sampled)
    assert_no_exception(at)
    result = job_registry().get(("parallel samples", prompt, n, tokens, SAMPLE_TEMPERATURE, seed)).result
    assert len(result.output_tokens) == n and max(result.output_tokens) <= tokens
    run = parallel_samples(result.prompt_tokens, list(result.output_tokens), page)
    assert metric(at, "Peak pages, prompt shared").value == f"{run.shared_peak}"
    assert metric(at, "Peak pages, prompt copied").value == f"{run.private_peak}"
    assert metric(at, "Memory saved").value == f"{run.saved:.0%}"
    assert run.copies == (n - 1 if result.prompt_tokens % page else 0)
    assert metric(at, "Real batch cache").value == human_bytes(result.cache_bytes)
    assert result.cache_bytes == n * (result.prompt_tokens + max(result.output_tokens) - 1) * per_token


def test_defaults(lm):
    at = open_page("paged-attention")
    assert at.slider(key="n").value == 12 and at.select_slider(key="page").value == 16
    iteration = at.slider(key="at").value
    check_page(at, lm, 12, 16, MAX_TOKENS, 1, iteration, 64, at.text_input(key="prompt").value, 4, 64)


def test_share_link_state(lm):
    prompt = "Name two rivers in Europe."
    at = open_page("paged-attention", {"n": "20", "page": "32", "reserve": "the whole context (8,192)", "seed": "7",
                                       "at": "50", "budget": "256", "samples": "3", "tokens": "24",
                                       "prompt": prompt})
    assert at.segmented_control(key="reserve").value == "the whole context (8,192)"
    check_page(at, lm, 20, 32, FULL_CONTEXT, 7, 50, 256, prompt, 3, 24)
    # Whole-context slabs: almost nothing they reserve holds a token.
    assert float(metric(at, "Slabs: holding tokens").value.rstrip("%")) < 5


def test_same_seed_same_batch_and_a_new_seed_another(lm):
    # Without a prompt the sampling section only asks for one (and starts no job).
    a, b, c = (open_page("paged-attention", {"seed": seed, "prompt": ""}) for seed in ("3", "3", "4"))
    values = lambda at: [m.value for m in at.metric]   # noqa: E731
    assert values(a) == values(b) != values(c) and len(values(a)) == 7
    assert chart(a, "memory_chart") == chart(b, "memory_chart") != chart(c, "memory_chart")
    assert "Type a prompt above to sample answers" in shown_text(a)
