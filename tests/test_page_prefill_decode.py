"""The prefill-decode page: its roofline's two ceilings are the measured figures it shows, the model's points sit
at intensities counted independently from the weights, and the measured passes it charts are the job's own."""
import json
import re

import pytest

from engine.runtime.jobs import job_registry
from engine.serving.roofline import machine_peaks, prefill_lengths
from tests.pages import assert_no_exception, open_page, run_until, shown_text

PROSE = "concepts/prefill-decode.md"


def chart(at, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")


def trace(figure: dict, name_start: str) -> dict:
    found = [t for t in figure["data"] if t.get("name", "").startswith(name_start)]
    assert found, [t.get("name") for t in figure["data"]]
    return found[0]


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def number(text: str) -> float:
    return float(re.match(r"[\d,.]+", text).group().replace(",", ""))


def by_hand(lm, n: int, cached: int = 0, sequences: int = 1) -> float:
    """FLOPs per byte of a pass, counted here from the model's modules, independently of engine.serving.roofline."""
    layers = lm.model.model.layers
    block = sum(p.numel() for layer in layers for name, p in layer.named_parameters() if name.endswith("proj.weight"))
    head = lm.model.lm_head.weight.numel()
    cfg = lm.model.config
    pairs = n * cached + n * (n + 1) / 2
    flops = sequences * (2 * n * block + 2 * head + 4 * cfg.num_hidden_layers * cfg.hidden_size * pairs)
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    return flops / (weights + sequences * kv * (cached + n))


def test_the_roofline_ceilings_are_the_measured_figures_shown(lm):
    at = open_page("prefill-decode")
    assert_no_exception(at)
    peaks = machine_peaks()   # the same process: the page's own measurement
    peak, bandwidth = number(metric(at, "Peak compute").value), number(metric(at, "Memory bandwidth").value)
    assert metric(at, "Peak compute").value == f"{peaks.flops_per_s / 1e9:.1f} GFLOP/s"
    assert metric(at, "Memory bandwidth").value == f"{peaks.bytes_per_s / 1e9:.2f} GB/s"
    assert metric(at, "Ridge point").value == f"{peaks.ridge:.1f}"
    figure = chart(at, "roofline_chart")
    compute = trace(figure, "compute roof")
    assert all(y == pytest.approx(peak, abs=0.05) for y in compute["y"])        # the flat roof is the peak shown
    memory = trace(figure, "memory roof")
    for x, y in zip(memory["x"], memory["y"]):
        assert y / x == pytest.approx(bandwidth, abs=0.005)                     # the slope is the bandwidth shown
    assert memory["y"][-1] == pytest.approx(compute["y"][0]) and memory["x"][-1] == compute["x"][0]   # the ridge
    assert compute["name"] == f"compute roof: {peak:.1f} GFLOP/s"

    # Before the measurement: the model's passes at their counted intensities, on the roof.
    limits = trace(figure, "prefill (labels: prompt tokens): the roofline's limit")
    assert limits["text"] == [str(n) for n in prefill_lengths(256)]
    for n, x, y in zip(prefill_lengths(256), limits["x"], limits["y"]):
        assert x == pytest.approx(by_hand(lm, n), rel=1e-9)
        assert y == pytest.approx(min(peaks.flops_per_s, peaks.bytes_per_s * x) / 1e9, rel=1e-9)
    decode = trace(figure, "decode (labels: sequences per step): the roofline's limit")
    assert decode["x"][0] == pytest.approx(by_hand(lm, 1, cached=64), rel=1e-9) and 0.49 < decode["x"][0] < 0.52
    assert decode["x"][2] == pytest.approx(by_hand(lm, 1, cached=64, sequences=16), rel=1e-9)
    assert "Weights read per pass 538.06 MB" in shown_text(at)
    assert at.select_slider(key="longest").value == 256 and at.select_slider(key="context").value == 64


def test_share_link_shows_the_measured_passes_it_timed(lm):
    at = open_page("prefill-decode", {"longest": "64", "context": "16"})
    run_until(at, lambda a: any(m.label == "Decode, one sequence" for m in a.metric) or bool(a.exception))
    assert_no_exception(at)
    timings = job_registry().get(("prefill-decode timing", (1, 4, 16, 64), 16)).result
    assert [p.tokens for p in timings.prefill] == [1, 4, 16, 64] and [d.batch for d in timings.decode] == [1, 4, 16]
    longest, single, batched = timings.prefill[-1], timings.decode[0], timings.decode[-1]
    assert metric(at, "Prefill, 64 tokens").value == f"{longest.tokens_per_s:,.0f} tokens/s"
    assert metric(at, "Decode, one sequence").value == f"{single.tokens_per_s:,.1f} tokens/s"
    assert metric(at, "Prefill ÷ decode").value == f"{longest.tokens_per_s / single.tokens_per_s:,.0f}×"
    assert metric(at, "Decode, 16 sequences").value == f"{batched.tokens_per_s:,.1f} tokens/s"

    speeds = chart(at, "speed_chart")
    assert trace(speeds, "prefill: measured")["y"] == pytest.approx([p.tokens_per_s for p in timings.prefill])
    assert trace(speeds, "decode: measured")["y"] == pytest.approx([single.tokens_per_s] * 2)
    roof = chart(at, "roofline_chart")
    measured = trace(roof, "prefill (labels: prompt tokens): measured")
    profile_flops = [2 * n * 106_168_320 + 2 * 28_311_552 + 4 * 30 * 576 * n * (n + 1) / 2 for n in (1, 4, 16, 64)]
    assert measured["y"] == pytest.approx([f / p.seconds / 1e9 for f, p in zip(profile_flops, timings.prefill)])
    assert measured["x"] == pytest.approx([by_hand(lm, n) for n in (1, 4, 16, 64)])
    steps = longest.seconds / single.seconds
    assert f"as long as **{steps:,.1f} decode steps**" in shown_text(at)
    assert "Passes timed at" in shown_text(at)


def test_prose_figures_are_the_model_s(lm):
    prose = open(PROSE, encoding="utf-8").read()
    block = sum(p.numel() for layer in lm.model.model.layers for name, p in layer.named_parameters()
                if name.endswith("proj.weight"))
    assert f"{block:,}" in prose and f"{lm.model.lm_head.weight.numel():,}" in prose
    assert f"{lm.card.parameters * 4:,} bytes" in prose
    assert f"about {by_hand(lm, 256):.0f} FLOP per byte" in prose and f"about {by_hand(lm, 1, 64):.1f} FLOP" in prose
    flops = 2 * 256 * block + 2 * lm.model.lm_head.weight.numel() + 4 * 30 * 576 * 256 * 257 / 2
    assert f"about {flops / 1e9:.1f} GFLOP" in prose and f"{256 * 46_080 / 1e6:.1f} MB of new cache" in prose


def test_odd_link_values_fall_back_to_defaults(lm):
    at = open_page("prefill-decode", {"longest": "1e400", "context": "<b>x</b>"})
    assert_no_exception(at)
    assert at.select_slider(key="longest").value == 256 and at.select_slider(key="context").value == 64
    assert at.get("plotly_chart")
