"""The self-attention page shows the model's own attention, works one row out by hand, follows its share link,
reuses the cached forward pass when only layer/head/query move, and survives bad input."""
import json
import re

import numpy as np
import pytest

import engine.inside.attention
from engine.inside.attention import attention_step, capture
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

DEFAULT_TEXT = "The animal didn't cross the street because it was too tired"


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def heatmap_weights(at) -> np.ndarray:
    """The weights of the first chart (the attention map); masked cells come back as NaN."""
    return plotly_array(figures(at)[0]["data"][1]["z"])


def checked_difference(at) -> float:
    message = next(s.value for s in at.success if "hand-computed row" in s.value.lower())
    return float(re.search(r"max \|difference\| = ([0-9.e+-]+)", message).group(1))


def test_defaults_show_the_models_map_and_the_worked_row(lm):
    at = open_page("self-attention")
    assert_no_exception(at)
    cap = capture(lm, DEFAULT_TEXT)
    assert at.slider(key="layer").value == 14 and at.slider(key="head").value == 9
    assert at.slider(key="query").value == 9                                  # the first " it"
    shown = heatmap_weights(at)
    expected = cap.attentions[13, 8]
    np.testing.assert_allclose(np.nansum(shown, axis=1), 1.0, atol=1e-3)      # rows sum to 1
    lower = np.tril_indices(cap.length)
    np.testing.assert_allclose(shown[lower], expected[lower], atol=1e-4)
    assert np.all(np.isnan(shown[np.triu_indices(cap.length, 1)]))           # the masked triangle is shown masked
    assert checked_difference(at) < 1e-5
    softmax = next(f for f in figures(at) if any(d.get("name") == "the model's own row" for d in f["data"]))
    hand = plotly_array(softmax["data"][0]["y"])
    model = plotly_array(softmax["data"][1]["y"])
    np.testing.assert_allclose(hand, model, atol=1e-5)
    np.testing.assert_allclose(model, expected[8, :9], atol=1e-6)
    assert hand.sum() == pytest.approx(1.0, abs=1e-6)
    text = shown_text(at)
    assert "Layer 14, head 9" in text or any("Layer 14, head 9" in s.value for s in at.subheader)
    assert "animal" in text                                                  # the filled-in top key


def test_share_link_state_is_restored(lm):
    text = "Once upon a time there was a small red fox"
    at = open_page("self-attention", {"text": text, "layer": "2", "head": "5", "query": "6", "lines": "all queries"})
    assert_no_exception(at)
    assert at.text_area(key="text").value == text
    assert (at.slider(key="layer").value, at.slider(key="head").value, at.slider(key="query").value) == (2, 5, 6)
    cap = capture(lm, text)
    shown = heatmap_weights(at)
    lower = np.tril_indices(cap.length)
    np.testing.assert_allclose(shown[lower], cap.attentions[1, 4][lower], atol=1e-4)
    step = attention_step(lm, cap, 1, 4, 5)
    scaled = next(f for f in figures(at) if f["layout"].get("yaxis", {}).get("title", {}).get("text") == "scaled score")
    np.testing.assert_allclose(plotly_array(scaled["data"][0]["y"])[:6], step.scaled_scores[:6], atol=1e-4)
    assert checked_difference(at) == pytest.approx(step.max_abs_difference, abs=1e-6) or checked_difference(at) < 1e-5
    lines = figures(at)[1]
    drawn = sum(len([x for x in d["x"] if x is not None]) // 2 for d in lines["data"] if d.get("mode") == "lines")
    assert drawn == int((cap.attentions[1, 4][lower] >= 0.02).sum())      # all queries' lines above 2%


def test_moving_layer_head_query_never_reruns_the_full_pass(lm, monkeypatch):
    """The maps come from one cached full pass; the worked row needs only the chosen layer's vectors, from a
    traced pass that stops after that layer and is reused while only the head or the query moves."""
    full, traced = [], []
    real_forward, real_trace = engine.inside.attention.forward, engine.inside.attention.trace

    def counting_forward(*args, **kwargs):
        full.append(1)
        return real_forward(*args, **kwargs)

    def counting_trace(*args, **kwargs):
        traced.append(kwargs["interventions"].exit_layer)
        return real_trace(*args, **kwargs)

    monkeypatch.setattr(engine.inside.attention, "forward", counting_forward)
    monkeypatch.setattr(engine.inside.attention, "trace", counting_trace)
    at = open_page("self-attention", {"text": "A text only this test uses, to miss every cache"})
    assert_no_exception(at)
    assert len(full) == 1 and traced == [14]          # default layer 14: the trace stops after it
    before = heatmap_weights(at)
    at.slider(key="layer").set_value(3).run()
    at.slider(key="head").set_value(1).run()
    at.slider(key="query").set_value(2).run()
    assert_no_exception(at)
    assert len(full) == 1 and traced == [14, 3]       # only the layer change traced, and only 3 layers
    assert not np.allclose(np.nan_to_num(before), np.nan_to_num(heatmap_weights(at)))
    assert checked_difference(at) < 1e-5


def test_single_token_text_still_works(lm):
    at = open_page("self-attention", {"text": "Hello"})
    assert_no_exception(at)
    assert [w.key for w in at.slider] == ["layer", "head"]                 # no query slider for one token
    assert heatmap_weights(at)[0, 0] == pytest.approx(1.0)
    assert checked_difference(at) < 1e-6


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "   "}, {"text": "a " * 50_000}, {"text": "🍓 emoji 日本語 العربية Ελληνικά *bold* `x` [a](b)"},
    {"text": "ctrl \x00\x07\x1b[0m chars"}, {"text": "<script>alert(1)</script>"},
    {"layer": "banana", "head": "-3", "query": "999", "lines": "zzz", "unknown": "x"},
    {"layer": "31", "head": "10", "query": "0"}, {"layer": "2.5", "head": "1e9"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("self-attention", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text", "x").strip() == "":
        assert "Type a sentence" in text
        return
    if len(params.get("text", "")) > 10_000:
        assert "Cut to the first" in text
    assert 1 <= at.slider(key="layer").value <= 30 and 1 <= at.slider(key="head").value <= 9
    assert checked_difference(at) < 1e-5
    if "<script>" in params.get("text", ""):
        assert all("<script>" not in m.value for m in at.markdown if getattr(m, "allow_html", False))
