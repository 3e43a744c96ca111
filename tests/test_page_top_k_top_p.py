"""The top-k/top-p page shows the engine's survivors on the text's most confident and most uncertain steps."""
import json

import numpy as np
import pytest
import torch

from engine.model.forward import forward
from engine.decoding.generation import filter_logits
from engine.decoding.sampling import entropy_bits, sampling_filter, softmax
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, shown_text

DEFAULT_TEXT = "The capital of France is Paris. My favourite city is"


def step_logits(lm, text):
    logits = forward(lm, token_ids(lm, text)).logits
    return logits, np.array([entropy_bits(softmax(row)) for row in logits])


def panels(at):
    """For each step panel: {"kept": ids, "removed": ids, "renormalised": percents} read from its chart."""
    out = []
    for chart in at.get("plotly_chart")[1:]:
        data = json.loads(chart.proto.spec)["data"]
        bars = [d for d in data if d["type"] == "bar"]
        kept = [row[0] for d in bars if d["name"] == "kept" for row in d["customdata"]]
        removed = {d["name"]: [row[0] for row in d["customdata"]] for d in bars if d["name"] != "kept"}
        diamonds = [d["x"] for d in data if d["type"] == "scatter"]
        out.append({"kept": kept, "removed": removed, "renormalised": diamonds[0] if diamonds else []})
    return out


def metrics(at, label):
    return [m.value for m in at.metric if m.label == label]


def assert_panels_match_engine(at, logits, positions, t, k, p, min_p=0.0):
    shown = panels(at)
    assert len(shown) == len(positions)
    survivors, masses = metrics(at, "Survivors"), metrics(at, "Kept mass")
    for panel, pos, count, mass in zip(shown, positions, survivors, masses):
        result = sampling_filter(logits[pos], t, k, p, min_p)
        top30 = np.argsort(-logits[pos], kind="stable")[:30]
        assert panel["kept"] == [int(i) for i in top30 if result.keep[i]]
        assert count == f"{result.survivors:,}"
        assert mass == f"{100 * result.kept_mass:.1f}%"
        if min_p == 0.0:  # the app's own generator samples from exactly these survivors
            engine = torch.isfinite(filter_logits(torch.from_numpy(logits[pos]), t, k, p)).numpy()
            assert np.array_equal(engine, result.keep) or t == 0
        if result.survivors <= 30:
            assert sum(panel["renormalised"]) == pytest.approx(100.0)


def test_defaults_pick_the_confident_and_uncertain_steps(lm):
    at = open_page("top-k-top-p")
    assert_no_exception(at)
    logits, entropies = step_logits(lm, DEFAULT_TEXT)
    confident, uncertain = int(np.argmin(entropies)), int(np.argmax(entropies))
    positions = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    np.testing.assert_allclose(positions, entropies, rtol=1e-6)
    assert_panels_match_engine(at, logits, [confident, uncertain], 1.0, 20, 0.9)
    survivors = [int(s.replace(",", "")) for s in metrics(at, "Survivors")]
    assert survivors[0] < survivors[1]   # top-p keeps fewer tokens where the model is sure
    text = shown_text(at)
    assert "Confident step (lowest entropy)" in text and "Uncertain step (highest entropy)" in text
    assert "Hugging Face transformers" in text and "llama.cpp" in text


def test_share_link_state_is_restored(lm):
    text = "Once upon a time, there was a little girl who"
    params = {"text": text, "t": "0.5", "k": "5", "p": "0.5", "minp": "0.2", "pick": "true", "a": "3",
              "b": "7", "log": "true"}
    at = open_page("top-k-top-p", params)
    assert_no_exception(at)
    assert at.text_area(key="text").value == text
    assert at.slider(key="t").value == pytest.approx(0.5) and at.slider(key="k").value == 5
    assert at.slider(key="p").value == pytest.approx(0.5) and at.slider(key="minp").value == pytest.approx(0.2)
    assert at.toggle(key="pick").value and at.toggle(key="log").value
    assert at.slider(key="a").value == 3 and at.slider(key="b").value == 7
    logits, _ = step_logits(lm, text)
    assert_panels_match_engine(at, logits, [2, 6], 0.5, 5, 0.5, 0.2)


def test_tiny_p_and_greedy_keep_exactly_one_token(lm):
    logits, entropies = step_logits(lm, DEFAULT_TEXT)
    positions = [int(np.argmin(entropies)), int(np.argmax(entropies))]
    at = open_page("top-k-top-p", {"p": "0.01", "k": "0"})
    assert_no_exception(at)
    assert metrics(at, "Survivors") == ["1", "1"]   # the nucleus is never empty
    assert_panels_match_engine(at, logits, positions, 1.0, 0, 0.01)
    at = open_page("top-k-top-p", {"t": "0"})
    assert metrics(at, "Survivors") == ["1", "1"]
    assert [panel["kept"] for panel in panels(at)] == [[int(np.argmax(logits[i]))] for i in positions]


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "   "}, {"text": "a" * 100_000}, {"text": "🍓 emoji 日本語 العربية Ελληνικά"},
    {"text": "ctrl \x00\x07\x1b[0m chars"}, {"text": "<script>alert(1)</script> $x$ **b** [l](x)"},
    {"text": "Hi"}, {"k": "-1", "p": "7", "t": "abc", "minp": "banana"},
    {"pick": "maybe", "a": "999", "b": "-2", "log": "2"}, {"pick": "true", "a": "banana", "b": "1e9"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("top-k-top-p", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text", "x").strip() == "":
        assert "Type or paste a text" in text
    elif len(params.get("text", "")) > 10_000:
        assert "Cut to the first" in text
    else:
        assert metrics(at, "Survivors") and all(int(v.replace(",", "")) >= 1 for v in metrics(at, "Survivors"))
