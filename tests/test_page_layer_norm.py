"""The layer-norm page redoes the model's RMSNorm by hand (checked here against the model to 1e-5), shows the
stream growing while the norms' outputs do not, contrasts LayerNorm on the same vector, measures the unit-gain
intervention, follows its share link, and reshapes without a forward pass."""
import json
import re

import numpy as np
import pytest
import torch

import engine.inside.norms
import engine.model.perplexity
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text
from ui.text import large_number

DEFAULT_TEXT = ("The Eiffel Tower was finished in 1889 for the World's Fair in Paris. For forty years it was the "
                "tallest building in the world.")


def chart(at, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def by_hand(lm, text: str, layer: int, position: int):
    """The norm redone here, independently of the page's engine: (x, y by hand, the model's output)."""
    ids = token_ids(lm, text)
    tp = trace(lm, ids, record={"resid_in", "attn_norm_out"}, layers=[layer])
    x = tp.at("resid_in", layer)[position].astype(np.float64)
    norm = lm.model.model.layers[layer].input_layernorm
    gain = norm.weight.numpy().astype(np.float64)
    y = x / np.sqrt(np.mean(x * x) + norm.variance_epsilon) * gain
    return x, y, tp.at("attn_norm_out", layer)[position], gain, norm.variance_epsilon


def check_norm_section(lm, at, text: str, layer: int, position: int) -> None:
    x, y, model, gain, eps = by_hand(lm, text, layer - 1, position - 1)
    assert np.abs(y - model).max() < 1e-5                                    # the formula is the model's norm
    shown = float(metric(at, "By hand vs model").value)
    assert shown < 1e-5 and shown == pytest.approx(np.abs(y - model).max(), rel=0.06, abs=1e-9)
    assert metric(at, "RMS of x").value == f"{np.sqrt(np.mean(x * x) + eps):.4g}"
    assert any("By hand equals the model's RMSNorm output" in s.value for s in at.success)
    # LayerNorm on the same vector, same gain, no bias, as torch computes it
    ln = torch.nn.functional.layer_norm(torch.from_numpy(x.copy()), (x.size,), torch.from_numpy(gain.copy()),
                                        eps=eps).numpy()
    cos = ln @ y / (np.linalg.norm(ln) * np.linalg.norm(y))
    assert metric(at, "LayerNorm vs RMSNorm").value == f"cos {cos:.4f}"
    assert metric(at, "Mean of x").value == f"{x.mean():+.3g}"
    figure = chart(at, "by_hand")
    np.testing.assert_allclose(plotly_array(figure["data"][0]["y"]), x, rtol=1e-6)
    np.testing.assert_allclose(plotly_array(figure["data"][1]["y"]), model, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(plotly_array(figure["data"][3]["y"]), ln - y, atol=1e-5)


def test_defaults_redo_the_norm_and_show_the_stream_growing(lm):
    at = open_page("layer-norm")
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT_TEXT)
    assert at.slider(key="token").value == len(ids) and at.slider(key="layer").value == 12
    check_norm_section(lm, at, DEFAULT_TEXT, 12, len(ids))

    # the stream's RMS entering every block grows; the norms' outputs stay small
    tp = trace(lm, ids, record={"resid_in", "attn_norm_out"})
    sizes = chart(at, "sizes")["data"]
    entering = plotly_array(sizes[0]["y"])
    np.testing.assert_allclose(entering, np.sqrt((tp["resid_in"][:, -1].astype(np.float64) ** 2).mean(-1)), rtol=1e-5)
    assert entering[-1] > 50 * entering[0] and np.mean(np.diff(entering) > 0) > 0.8
    outputs = plotly_array(sizes[2]["y"])
    assert outputs.max() < entering[-1] / 20
    assert metric(at, "Stream RMS, block 30").delta == f"{entering[-1] / entering[0]:,.0f}× larger"

    # the experiment: the final norm's gain set to 1, perplexity measured on the text
    assert at.multiselect(key="unit").value == ["final"]
    base = perplexity(lm, ids).perplexity
    unit = perplexity(lm, ids, Interventions(unit_norm_gain=frozenset({"final"}))).perplexity
    assert metric(at, "Perplexity as trained").value == f"{base:,.2f}"
    assert metric(at, "With g = 1").value == large_number(unit) and unit > 10 * base
    assert "massive" in shown_text(at).lower() and "d508" in shown_text(at)


def test_share_link_restores_the_state(lm):
    text = "Water boils at one hundred degrees Celsius at sea level."
    # option widgets carry their shown labels in the link
    at = open_page("layer-norm", {"text": text, "token": "1", "layer": "20", "gain_of": "final norm",
                                  "unit": ["the 30 attention norms", "the 30 FFN norms"]})
    assert_no_exception(at)
    assert at.text_area(key="text").value == text
    assert at.slider(key="token").value == 1 and at.slider(key="layer").value == 20
    assert at.multiselect(key="unit").value == ["attention", "ffn"]
    check_norm_section(lm, at, text, 20, 1)
    gain = chart(at, "gain")["data"][0]
    np.testing.assert_allclose(plotly_array(gain["y"]), lm.model.model.norm.weight.numpy(), rtol=1e-6)
    ids = token_ids(lm, text)
    changed = perplexity(lm, ids, Interventions(unit_norm_gain=frozenset({"attention", "ffn"})))
    assert metric(at, "With g = 1").value == large_number(changed.perplexity)
    losses = chart(at, "unit_gain")["data"]
    np.testing.assert_allclose(plotly_array(losses[1]["y"]), np.maximum(changed.token_nll, 1e-3), rtol=1e-5)


def test_sliders_reshape_without_a_forward_pass(lm, monkeypatch):
    at = open_page("layer-norm")
    before = metric(at, "RMS of x").value

    def no_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran on a slider move")
    monkeypatch.setattr(engine.inside.norms, "trace", no_pass)
    monkeypatch.setattr(engine.model.perplexity, "trace", no_pass)
    at.slider(key="layer").set_value(3).run()
    at.slider(key="token").set_value(2).run()
    assert_no_exception(at)
    assert metric(at, "RMS of x").value != before
    assert float(metric(at, "By hand vs model").value) < 1e-5


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "Hi"}, {"text": "🍓 emoji 日本語 <b>x</b> $y$"}, {"unit": ["nonsense"]},
    {"layer": "99", "token": "-4", "gain_of": "bogus"},
])
def test_odd_input_is_handled(lm, params):
    at = open_page("layer-norm", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text") == "":
        assert "Type a sentence" in text
    elif params.get("text") == "Hi":
        assert re.search(r"Pick at least one norm, on a text of two tokens or more", text)
    else:
        assert float(metric(at, "By hand vs model").value) < 1e-5
