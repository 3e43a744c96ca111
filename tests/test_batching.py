"""The batching scheduler simulation: every requested token is served once, the same seed gives the same
timeline, padding is counted right, and continuous batching never starts a request later than a free slot allows."""
import math

import numpy as np
import pytest

from engine.serving.batching import (CONTINUOUS, STATIC, StreamRequest, percentile, request_stream, simulate,
                             simulate_continuous, simulate_static)

SHAPES = [(30, 5), (40, 80), (35, 1), (50, 200), (31, 17), (45, 60)]


def decode_cost(rows: int) -> float:
    return 0.02 + 0.005 * rows


def prefill_cost(tokens: int) -> float:
    return 0.001 * tokens


def stream(seed=0, count=20, rate=2.0):
    return request_stream(SHAPES, count, rate, seed)


def test_stream_is_deterministic_for_a_seed():
    assert stream(3) == stream(3)
    assert stream(3) != stream(4)
    arrivals = [r.arrival_s for r in stream(3)]
    assert arrivals[0] == 0 and arrivals == sorted(arrivals)
    assert {(r.prompt_tokens, r.output_tokens) for r in stream(3, 200)} <= set(SHAPES)
    burst = request_stream(SHAPES, 5, math.inf, 1)
    assert [r.arrival_s for r in burst] == [0.0] * 5


@pytest.mark.parametrize("policy", [STATIC, CONTINUOUS])
@pytest.mark.parametrize("seed, batch, rate", [(0, 4, 2.0), (1, 1, 0.5), (2, 8, math.inf), (3, 16, 20.0)])
def test_tokens_served_equal_tokens_requested(policy, seed, batch, rate):
    requests = stream(seed, 25, rate)
    tl = simulate(policy, requests, batch, decode_cost, prefill_cost)
    assert tl.tokens_served == tl.tokens_requested == sum(r.output_tokens for r in requests)
    # Step by step: the useful decode rows plus one first token per request.
    assert sum(s.useful_rows for s in tl.steps) + len(requests) == tl.tokens_served
    assert sorted(r.id for r in tl.results) == [r.id for r in requests]
    for res in tl.results:
        assert res.arrival_s <= res.start_s < res.first_token_s <= res.done_s <= res.returned_s + 1e-12
    # Steps never overlap, and never run more rows than the batch allows.
    for a, b in zip(tl.steps, tl.steps[1:]):
        assert a.end_s <= b.start_s + 1e-12
    assert max(s.rows for s in tl.steps) <= batch
    assert tl.busy_s == pytest.approx(sum(s.end_s - s.start_s for s in tl.steps))


def test_same_seed_same_timeline():
    a = simulate_continuous(stream(5), 4, decode_cost, prefill_cost)
    b = simulate_continuous(stream(5), 4, decode_cost, prefill_cost)
    assert a == b
    assert simulate_static(stream(5), 4, decode_cost, prefill_cost) == simulate_static(stream(5), 4, decode_cost,
                                                                                         prefill_cost)


def test_static_padding_by_hand():
    requests = [StreamRequest(0, 0.0, 10, 3), StreamRequest(1, 0.0, 4, 6)]
    tl = simulate_static(requests, 2, decode_cost, prefill_cost)
    # One batch: prompts padded to 10 (6 padding tokens), 5 decode steps of 2 rows, request 0 idle in 3 of them.
    assert tl.prefill_padding == 6 and tl.decode_padding == 3
    assert len(tl.steps) == 6 and tl.computed_tokens == 20 + 10
    prefill_end = prefill_cost(20)
    assert tl.results[0].first_token_s == tl.results[1].first_token_s == pytest.approx(prefill_end)
    assert tl.results[0].done_s == pytest.approx(prefill_end + 2 * decode_cost(2))
    assert tl.results[0].returned_s == tl.results[1].returned_s == pytest.approx(prefill_end + 5 * decode_cost(2))
    kinds = [s.kind for s in tl.segments if s.request == 0]
    assert kinds == ["prefill", "decoding", "padding"]


def test_continuous_by_hand():
    requests = [StreamRequest(0, 0.0, 10, 3), StreamRequest(1, 0.0, 4, 6), StreamRequest(2, 0.0, 5, 2)]
    tl = simulate_continuous(requests, 2, decode_cost, prefill_cost)
    assert tl.decode_padding == tl.prefill_padding == 0
    r0, r1, r2 = tl.results
    # Request 2 waits for request 0's slot, joins in the step after request 0 ends, and pays its prefill there.
    assert r0.done_s == pytest.approx(prefill_cost(14) + 2 * decode_cost(2))
    assert r2.start_s == pytest.approx(r0.done_s)
    assert r2.first_token_s == pytest.approx(r2.start_s + decode_cost(1) + prefill_cost(5))
    assert r1.returned_s == r1.done_s


def test_continuous_beats_static_on_a_mixed_stream():
    requests = stream(0, 30, 4.0)
    st_, ct = (simulate(p, requests, 8, decode_cost, prefill_cost) for p in (STATIC, CONTINUOUS))
    assert ct.throughput > st_.throughput
    assert ct.decode_padding == 0 < st_.decode_padding
    assert percentile(ct.latencies(), 50) < percentile(st_.latencies(), 50)


def test_batch_of_one_is_the_same_for_both_policies():
    requests = stream(2, 10, 1.0)
    a = simulate_static(requests, 1, decode_cost, prefill_cost)
    b = simulate_continuous(requests, 1, decode_cost, prefill_cost)
    assert [r.returned_s for r in a.results] == pytest.approx([r.returned_s for r in b.results])


@pytest.mark.parametrize("q", [0, 25, 50, 90, 95, 100])
def test_percentile_matches_numpy(q):
    values = [3.0, 1.0, 7.5, 2.2, 9.0, 4.4, 4.4]
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))
    assert percentile([], q) == 0.0
