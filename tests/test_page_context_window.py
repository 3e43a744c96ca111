"""The context-window page reads the window from the config, times real passes (capped, with a note), and measures
the perplexity of the reader's text against the context it is given."""
import json
import time

import numpy as np
import pytest

import engine.inside.long_context
from engine.runtime.jobs import job_registry
from engine.inside.long_context import cost_lengths
from engine.model.perplexity import scores_from_logits
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text

CAP = 2048
STORY = ("Nadia repaired clocks in a narrow shop on Vine Street. Her oldest customer, Mr. Okafor, brought the same "
         "brass carriage clock every winter, because its chime had stuck on the note G since 1974. Nadia never "
         "charged him. One December he did not come, and in January a parcel arrived at the shop on Vine Street: "
         "the brass carriage clock, a note from Mr. Okafor's daughter, and a request that Nadia keep it. Nadia "
         "set it on the counter and let it chime its stuck G every hour.")


def charts(at) -> dict[str, dict]:
    return {c.proto.id.split("-", 2)[2]: json.loads(c.proto.spec) for c in at.get("plotly_chart")}


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    assert found, [m.label for m in at.metric]
    return found[0]


def costs_shown(at) -> bool:
    return "costs" in charts(at)


def curve_shown(at) -> bool:
    return "curve" in charts(at)


def nll_of_last(lm, window: list[int], scored: int, shift: int = 0) -> np.ndarray:
    logits = trace(lm, window, interventions=Interventions(position_shift=shift)).logits
    return scores_from_logits(window, logits)[0][-scored:]


def test_defaults_read_the_window_and_measure_costs_and_context(lm):
    at = open_page("context-window")
    assert_no_exception(at)
    cfg = lm.model.config
    assert cfg.max_position_embeddings == 8192
    assert metric(at, "Context window").value == f"{cfg.max_position_embeddings:,} tokens"
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) \
        * next(lm.model.parameters()).element_size()
    assert metric(at, "KV cache per token").value == f"{per_token:,} B"
    assert metric(at, "Cache at 8,192 tokens").value == f"{per_token * 8192 / 1e6:,.2f} MB"

    run_until(at, lambda a: costs_shown(a) and curve_shown(a), timeout=400)
    assert_no_exception(at)
    costs = charts(at)["costs"]["data"]
    lengths = costs[0]["x"]
    expected = cost_lengths(1024, CAP)
    assert expected == [128, 256, 512, 1024]
    # All four unless a very busy machine spent the time budget first (the page then says so).
    assert lengths == expected[:len(lengths)] and (lengths == expected or "Stopped after" in shown_text(at))
    measured = plotly_array(costs[3]["y"])
    np.testing.assert_allclose(measured, [per_token * n / 1e6 for n in lengths])   # real tensors = formula
    assert metric(at, f"Cache at {lengths[-1]:,}").delta == "= formula ✓"
    assert np.all(plotly_array(costs[0]["y"]) > 0)
    assert "Measured up to" not in shown_text(at)

    # The context experiment: the scored tokens' perplexity, recomputed here pass by pass.
    text = at.text_area(key="text").value
    ids = token_ids(lm, text)
    curve = charts(at)["curve"]["data"][0]
    contexts, shown = curve["x"], plotly_array(curve["y"])
    assert contexts[0] == 1 and contexts[-1] == len(ids) - 48
    for i in (0, len(contexts) - 1):
        window = ids[len(ids) - 48 - contexts[i]:]
        assert shown[i] == pytest.approx(float(np.exp(nll_of_last(lm, window, 48).mean())), rel=1e-4)
    assert shown[-1] < shown[0] / 2          # the story before the end makes its last tokens far easier
    assert metric(at, "Perplexity, 1 earlier token").value == f"{shown[0]:.1f}"
    base = float(np.exp(nll_of_last(lm, ids, len(ids) - 1).mean()))
    shifted = float(np.exp(nll_of_last(lm, ids, len(ids) - 1, shift=8192).mean()))
    assert metric(at, "Positions from 0").value == f"perplexity {base:.3f}"
    assert abs(shifted - base) / base < 1e-3
    assert metric(at, "Positions from 8,192").value == f"perplexity {shifted:.3f}"


def test_share_link_restores_the_text_and_scored_tokens(lm):
    at = open_page("context-window", {"text": STORY, "scored": "32"})
    assert_no_exception(at)
    assert at.text_area(key="text").value == STORY and at.slider(key="scored").value == 32
    run_until(at, curve_shown, timeout=300)
    ids = token_ids(lm, STORY)
    curve = charts(at)["curve"]["data"][0]
    assert curve["x"][-1] == len(ids) - 32
    full = float(np.exp(nll_of_last(lm, ids, 32).mean()))
    assert metric(at, f"Perplexity, all {len(ids) - 32:,} earlier").value == f"{full:.1f}"


def test_needle_share_link_runs_the_haystack_grid(lm):
    from engine.inside.long_context import needle_cell

    at = open_page("context-window", {"needle": "true", "hay": "128", "code": "8362", "depth": "100%", "text": ""})
    assert_no_exception(at)
    assert at.toggle(key="needle").value and at.text_input(key="code").value == "8362"
    run_until(at, lambda a: "needle_grid" in charts(a), timeout=300)
    assert_no_exception(at)
    grid = charts(at)["needle_grid"]["data"][0]
    assert grid["x"] == ["128 tokens"] and grid["y"] == ["0%", "25%", "50%", "75%", "100%"]
    shown = plotly_array(grid["z"]).ravel()
    for depth, p in zip((0.0, 0.25, 0.5, 0.75, 1.0), shown):   # each cell, recomputed by its own pass
        assert p == pytest.approx(needle_cell(lm, 128, depth, "8362").answer_probability, rel=1e-4)
    last = needle_cell(lm, 128, 1.0, "8362")
    assert metric(at, "Attention on the needle").value == f"{100 * last.needle_share:.1f}%"
    curve = charts(at)["needle_attention"]["data"][0]
    np.testing.assert_allclose(plotly_array(curve["y"]), last.attention, rtol=1e-4)


def test_the_needle_test_waits_for_its_switch(lm):
    at = open_page("context-window", {"text": ""})
    assert "Switch on **Run the haystack test**" in shown_text(at) and "needle_grid" not in charts(at)


class FakeClock:
    """perf_counter advancing a quarter second per call: what the page shows must be what the clock said."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.25
        return self.now

    @staticmethod
    def time() -> float:
        return time.time()


def test_measured_points_come_from_the_clock_not_from_typed_numbers(lm, monkeypatch):
    monkeypatch.setattr(engine.inside.long_context, "time", FakeClock())
    at = open_page("context-window", {"longest": "256", "text": ""})
    at.button(key="again").click().run()     # a fresh run under the fake clock, whatever was stored before
    run_until(at, lambda a: costs_shown(a) and plotly_array(charts(a)["costs"]["data"][0]["y"])[0] == 0.25)
    costs = charts(at)["costs"]["data"]
    assert list(plotly_array(costs[0]["y"])) == [0.25, 0.25]                  # prefill seconds
    np.testing.assert_allclose(plotly_array(costs[1]["y"]), [250 / 128, 250 / 256])   # ms per token
    assert metric(at, "Decode at 256").value == "250 ms per token"
    monkeypatch.undo()                       # measure again for real, so no later reader sees the fake clock
    at.button(key="again").click().run()
    run_until(at, lambda a: costs_shown(a) and plotly_array(charts(a)["costs"]["data"][0]["y"])[0] != 0.25)


def test_the_length_cap_is_enforced_with_a_visible_note(lm):
    at = open_page("context-window", {"longest": "16k"})
    assert_no_exception(at)
    assert "Measured up to 2,048 tokens only" in shown_text(at) and "beyond the model's trained 8,192" in shown_text(at)
    job = job_registry().get(("context costs", tuple(cost_lengths(16384, CAP))))
    assert job is not None                    # the job asks for nothing above the cap
    assert max(job.key[1]) == CAP
    job.request_stop()                        # a reader pressing Stop: what was measured so far is shown
    run_until(at, costs_shown, timeout=300)
    lengths = charts(at)["costs"]["data"][0]["x"]
    assert max(lengths) <= CAP
    assert len(lengths) == len(cost_lengths(16384, CAP)) or "Stopped after" in shown_text(at)


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "Hi there"}, {"text": "a " * 20_000}, {"longest": "banana", "scored": "9999"},
    {"text": "🍓 emoji 日本語 <script>alert(1)</script> $x$ " * 10, "scored": "-5"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("context-window", params)
    assert_no_exception(at)
    text = shown_text(at)
    assert "Context window" in text
    if params.get("text") == "":
        assert "Paste a story" in text
    elif params.get("text") == "Hi there":
        assert "give it at least" in text
