"""The continuous-batching page: the step times shown are the measured ones, every figure of both timelines is
recomputed here by the engine from the real answers and those step times, tokens served equal tokens requested,
and the same seed draws the same timeline."""
import json
import math

import pytest

from engine.serving.batching import CONTINUOUS, STATIC, percentile, request_stream, simulate
from engine.serving.workload import load_answers
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if key in c.proto.id]
    assert found, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def measured():
    from ui.serving import step_times   # the server's one measurement, kept process-wide (st.cache_resource)
    return step_times()


def check_page(at, count, rate, batch, seed):
    assert_no_exception(at)
    times = measured()
    ms = [1000 * s for s in times.decode_s]
    assert times.batch_sizes == (1, 2, 4, 8, 16) and all(t > 0 for t in times.decode_s)
    assert metric(at, "Decode step, batch 1").value == f"{ms[0]:.0f} ms"
    assert metric(at, "Decode step, batch 16").value == f"{ms[-1]:.0f} ms"
    assert list(plotly_array(chart(at, "steps_chart")["data"][0]["y"])) == pytest.approx(ms)

    shapes = [(a.prompt_tokens, a.output_tokens) for a in load_answers().answers]
    stream = request_stream(shapes, count, rate, seed)
    static, cont = (simulate(p, stream, batch, times.decode_step_s, times.prefill_time_s) for p in (STATIC, CONTINUOUS))
    for tl in (static, cont):   # totals reconcile
        assert tl.tokens_served == tl.tokens_requested == sum(r.output_tokens for r in stream)
    served = f"Both served {cont.tokens_served:,} tokens for {count} requests (= the tokens requested ✓)"
    assert served in shown_text(at)
    assert metric(at, "Throughput, continuous").value == f"{cont.throughput:,.1f} tok/s"
    assert metric(at, "Throughput, continuous").delta.startswith(f"static: {static.throughput:,.1f} tok/s")
    assert metric(at, "Time to first token, p50").value == f"{percentile(cont.ttfts(), 50):.2f} s"
    assert metric(at, "Latency, p95").value == f"{percentile(cont.latencies(), 95):.1f} s"
    assert metric(at, "Latency, p95").delta == f"static: {percentile(static.latencies(), 95):.1f} s"
    assert metric(at, "Padding computed, static").value == f"{static.padding_share:.0%}"
    assert cont.decode_padding == cont.prefill_padding == 0
    # The timeline drawn is the engine's: every segment of both policies, at its start and length.
    gantt = chart(at, "gantt_chart")["data"]
    drawn = sorted((b, w) for t in gantt for b, w in zip(plotly_array(t["base"]), plotly_array(t["x"])))
    expected = sorted((s.start_s, s.end_s - s.start_s) for tl in (static, cont) for s in tl.segments)
    assert len(drawn) == len(expected)
    assert [v for pair in drawn for v in pair] == pytest.approx([v for pair in expected for v in pair])
    bars = chart(at, "latency_chart")["data"]
    assert list(plotly_array(bars[1]["y"])) == pytest.approx([percentile(cont.ttfts(), 50),
                                                             percentile(cont.ttfts(), 95),
                                                             percentile(cont.latencies(), 50),
                                                             percentile(cont.latencies(), 95)])
    return static, cont


def test_defaults(lm):
    at = open_page("continuous-batching")
    static, cont = check_page(at, 20, 0.5, 8, 1)
    assert cont.throughput > static.throughput


def test_share_link_state_burst(lm):
    at = open_page("continuous-batching", {"n": "30", "rate": "all at once", "batch": "4", "seed": "9"})
    assert at.select_slider(key="rate").value == "all at once"
    static, cont = check_page(at, 30, math.inf, 4, 9)
    assert static.padding_share > 0


def test_same_seed_same_timeline(lm):
    a = open_page("continuous-batching", {"seed": "5"})
    b = open_page("continuous-batching", {"seed": "5"})
    c = open_page("continuous-batching", {"seed": "6"})
    spec = lambda at: chart(at, "gantt_chart")["data"]   # noqa: E731
    assert spec(a) == spec(b) != spec(c)
