"""The causal-mask page shows the model's own masked attention (exactly 0 above the diagonal), the measured cost of
removing the mask, the future-edit proof and the attention sink; follows its share link; reshapes without new
passes; survives bad input."""
import numpy as np
import pytest

import engine.inside.causal_mask
import engine.inside.future_edit
from engine.inside.causal_mask import first_token_share
from engine.model.encoder import load_encoder
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.future_edit_checks import assert_future_edit_shown, charts, heatmap_z, metric
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

DEFAULT_TEXT = "She opened the door, looked outside, and saw that it had started to snow."
FACTS = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome."


@pytest.fixture(scope="module")
def enc():
    return load_encoder()


def shown_maps(at) -> tuple[np.ndarray, np.ndarray]:
    found = charts(at)
    return heatmap_z(found["map_on"]), heatmap_z(found["map_off"])


def probs(lm, text: str, layer: int, causal: bool) -> np.ndarray:
    """One layer's weights from a pass that records every layer's, as the page's does (like with like: a layer
    that records its weights forms them explicitly, which differs from the fused kernel by float rounding)."""
    ids = token_ids(lm, text)
    return trace(lm, ids, record={"probs"}, interventions=Interventions(causal_mask=causal))["probs"][layer]


def test_defaults_show_the_masks_effect_measured(lm, enc):
    at = open_page("causal-mask")
    assert_no_exception(at)
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (19, 8)
    on, off = shown_maps(at)
    n = len(token_ids(lm, DEFAULT_TEXT))
    upper = np.triu_indices(n, 1)
    assert on.shape == off.shape == (n, n)
    assert np.all(on[upper] == 0.0)                                            # the model's own zeros, drawn as 0
    np.testing.assert_allclose(on, probs(lm, DEFAULT_TEXT, 18, True)[7], atol=1e-6)
    np.testing.assert_allclose(off, probs(lm, DEFAULT_TEXT, 18, False)[7], atol=1e-6)
    assert off[upper].sum() > 1.0                                              # unmasked: weight on later tokens
    assert metric(at, "Later-token weight, mask on") == "0"

    ids = token_ids(lm, DEFAULT_TEXT)
    masked, unmasked = perplexity(lm, ids), perplexity(lm, ids, Interventions(causal_mask=False))
    assert metric(at, "Perplexity, mask on") == f"{masked.perplexity:,.2f}"
    assert metric(at, "Perplexity, mask removed") == f"{unmasked.perplexity:,.2f}"
    assert unmasked.perplexity < masked.perplexity / 3                         # it cheats on this text
    assert metric(at, "Top-1 hits, mask removed") == f"{unmasked.top1_accuracy:.0%}"
    assert "it cheated" in shown_text(at)
    bars = charts(at)["cheat"]["data"]
    np.testing.assert_allclose(plotly_array(bars[1]["y"]), np.exp(-unmasked.token_nll), rtol=1e-6)

    assert_future_edit_shown(at, lm, enc, DEFAULT_TEXT, DEFAULT_TEXT.replace("snow", "rain"))

    full = trace(lm, ids, record={"probs"})["probs"]
    sink = first_token_share(full).mean(-1)
    peak = int(np.argmax(sink))
    assert metric(at, f"On the first token, layer {peak + 1}, mask on") == f"{sink[peak]:.0%}"
    assert sink[peak] > 0.5


def test_share_link_restores_a_state_where_the_mask_removal_hurts(lm, enc, monkeypatch):
    """A list of facts: removing the mask raises perplexity. Moving the head, the layer or the chosen model then
    only reshapes cached results: no new traced pass."""
    calls = []
    for module in (engine.inside.causal_mask, engine.inside.future_edit):
        real = module.trace
        monkeypatch.setattr(module, "trace", lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    params = {"text": FACTS, "word": "Milan", "layer": "5", "head": "2", "edit_model": "SmolLM2, mask removed"}
    at = open_page("causal-mask", params)
    assert_no_exception(at)
    assert at.text_area(key="text").value == FACTS and at.text_input(key="word").value == "Milan"
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (5, 2)
    on, off = shown_maps(at)
    np.testing.assert_allclose(on, probs(lm, FACTS, 4, True)[1], atol=1e-6)
    np.testing.assert_allclose(off, probs(lm, FACTS, 4, False)[1], atol=1e-6)
    ids = token_ids(lm, FACTS)
    masked, unmasked = perplexity(lm, ids), perplexity(lm, ids, Interventions(causal_mask=False))
    assert unmasked.perplexity > masked.perplexity                             # here the leak does not help
    assert "perplexity rose" in shown_text(at)
    assert metric(at, "Perplexity, mask removed") == f"{unmasked.perplexity:,.2f}"
    shown = assert_future_edit_shown(at, lm, enc, FACTS, FACTS.replace("Rome", "Milan"))
    depth_map = heatmap_z(charts(at)["edit_depths"])                          # the chosen model's layers
    assert depth_map.shape[0] == 31 and depth_map.max() > 0 and np.all(depth_map[0] == 0)
    assert shown["No mask"] > 1

    passes = len(calls)
    at.slider(key="head").set_value(7).run()
    at.slider(key="layer").set_value(3).run()
    at.segmented_control(key="edit_model").set_value("SmolLM2 (causal decoder)").run()
    assert_no_exception(at)
    assert len(calls) == passes
    np.testing.assert_allclose(shown_maps(at)[0], probs(lm, FACTS, 2, True)[6], atol=1e-6)
    assert np.all(heatmap_z(charts(at)["edit_depths"]) == 0)                   # the causal decoder: nothing moved


@pytest.mark.parametrize("params, expected", [
    ({"text": ""}, "Type a sentence"),
    ({"text": "Hi"}, "A single token"),
    ({"text": "!!! ???"}, "no word to replace"),
    ({"word": ""}, "Type a word"),
    ({"word": "snow"}, "already the last word"),
    ({"text": "It is snow.", "word": "SNOW"}, "MiniLM cannot see this edit"),
    ({"text": "🍓 emoji 日本語 <script>alert(1)</script> *bold*", "word": "$x$"}, "Nothing leaked backwards"),
])
def test_odd_input_gets_a_clear_message(lm, params, expected):
    at = open_page("causal-mask", params)
    assert_no_exception(at)
    assert expected in shown_text(at)
