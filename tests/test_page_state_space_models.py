"""The state-space page runs its scan on the live model's surprise, checks it against its direct forms, and shows
per-token costs that come from timed runs (capped, with a note)."""
import json
import time

import numpy as np
import pytest

import engine.inside.state_space
from engine.model.perplexity import scores_from_logits
from engine.inside.state_space import retention, selective_deltas, step_lengths
from engine.tokens.offsets import token_ids
from engine.model.traced import trace
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text

CAP = 16384


def charts(at) -> dict[str, dict]:
    return {c.proto.id.split("-", 2)[2]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def surprise_by_hand(lm, text: str) -> np.ndarray:
    ids = token_ids(lm, text)
    nll = scores_from_logits(ids, trace(lm, ids).logits)[0].astype(np.float64)
    return np.concatenate([[nll.mean()], nll])


def check_scan(at, lm, text: str, selectivity: float, decay: float) -> None:
    surprise = surprise_by_hand(lm, text)
    deltas = selective_deltas(surprise, selectivity)
    shown = charts(at)["deltas"]["data"]
    np.testing.assert_allclose(plotly_array(shown[0]["y"]), deltas, rtol=1e-5)
    np.testing.assert_allclose(plotly_array(shown[1]["y"]), surprise, rtol=1e-5)
    assert metric(at, "Step sizes Δ").value == f"{deltas.min():.2f} to {deltas.max():.2f}"
    W = retention(deltas, decay)
    share = W[-1] / W[-1].sum()
    np.testing.assert_allclose(plotly_array(charts(at)["kept"]["data"][0]["y"]), 100 * share, rtol=1e-5)
    assert metric(at, "Largest share of the final state").value == f"{100 * share.max():.0f}%"
    assert float(metric(at, "Scan = unrolled matrix form").value) < 1e-9
    assert float(metric(at, "Selectivity 0 = convolution").value) < 1e-9


def both_measured(at) -> bool:
    return {"steps", "decode"} <= set(charts(at))


def test_defaults_scan_the_text_and_measure_both_costs(lm):
    at = open_page("state-space-models")
    assert_no_exception(at)
    text = at.text_area(key="text").value
    check_scan(at, lm, text, 1.0, 0.2)
    run_until(at, both_measured, timeout=400)
    assert_no_exception(at)
    steps = charts(at)["steps"]["data"]
    contexts = steps[0]["x"]
    assert contexts == step_lengths(16384, CAP) == [256, 1024, 4096, 16384]
    kv_mb, state_mb = plotly_array(steps[2]["y"]), plotly_array(steps[3]["y"])
    card = lm.card
    np.testing.assert_allclose(kv_mb, [2 * card.kv_heads * n * card.head_dim * 4 / 1e6 for n in contexts])
    np.testing.assert_allclose(state_mb, 2 * card.d_model * 16 * 4 / 1e6)       # fixed, whatever the context
    decode = charts(at)["decode"]["data"]
    measured = decode[0]["x"]   # all four unless a very busy machine spent the time budget first (then said)
    assert measured == [128, 256, 512, 1024][:len(measured)]
    assert len(measured) == 4 or "the run stopped early" in shown_text(at)
    per_token = 2 * card.layers * card.kv_heads * card.head_dim * 4
    np.testing.assert_allclose(plotly_array(decode[1]["y"]), [per_token * n / 1e6 for n in decode[0]["x"]])
    assert "Measured up to" not in shown_text(at)


def test_share_link_without_selection_is_a_convolution(lm):
    text = "The bell rang twice. Then the bell rang again, and the children ran out into the snow."
    at = open_page("state-space-models", {"text": text, "select": "0", "decay": "2.0"})
    assert_no_exception(at)
    assert at.slider(key="select").value == 0.0 and at.slider(key="decay").value == 2.0
    check_scan(at, lm, text, 0.0, 2.0)
    assert metric(at, "Step sizes Δ").value == "0.50 to 0.50"       # no selection: one step size
    share = plotly_array(charts(at)["kept"]["data"][0]["y"])
    assert np.all(np.diff(share) > 0)                               # a plain fading memory: the latest weighs most


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.25
        return self.now

    @staticmethod
    def time() -> float:
        return time.time()


def test_step_costs_come_from_the_clock_and_the_cap_is_enforced(lm, monkeypatch):
    monkeypatch.setattr(engine.inside.state_space, "time", FakeClock())
    at = open_page("state-space-models", {"longest": "128k", "text": ""})
    assert_no_exception(at)
    assert "Measured up to 16,384 tokens only" in shown_text(at)
    at.button(key="again").click().run()
    run_until(at, lambda a: "steps" in charts(a) and plotly_array(charts(a)["steps"]["data"][0]["y"])[0] == 250)
    steps = charts(at)["steps"]["data"]
    assert max(steps[0]["x"]) == CAP                                # the cap, enforced
    assert list(plotly_array(steps[0]["y"])) == [250.0] * 4          # what the clock said, nothing typed in
    assert list(plotly_array(steps[1]["y"])) == [250.0] * 4
    monkeypatch.undo()                                               # measure again for real for later readers
    at.button(key="again").click().run()
    run_until(at, lambda a: "steps" in charts(a) and plotly_array(charts(a)["steps"]["data"][0]["y"])[0] != 250)


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "Hi"}, {"text": "a" * 50_000}, {"select": "nan", "decay": "-3", "longest": "7"},
    {"text": "🍓 emoji 日本語 <script>alert(1)</script> $x$ **b**", "select": "99"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("state-space-models", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text") == "":
        assert "Type a few sentences" in text
    elif "text" in params and len(params["text"]) > 10_000:
        assert "Cut to the first" in text
