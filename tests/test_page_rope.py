"""The RoPE page shows the model's own rotation table (equal to the formula), its real q and k turned pair by
pair, the shift invariance measured on all 30 layers, and the perplexity with RoPE on, off and changed;
it follows its share link and reshapes without a forward pass."""
import json

import numpy as np
import pytest

import engine.inside.positions
import ui.positions
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

DEFAULT_TEXT = ("The old lighthouse keeper climbed the narrow stairs every evening to light the lamp, and ships far "
                "out at sea relied on its beam to find their way past the rocks.")


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def metric(at, label_start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label_start))


def config_theta_and_dim(lm) -> tuple[float, int]:
    cfg = lm.model.config
    return cfg.rope_parameters["rope_theta"], cfg.head_dim


def formula_cos(lm, positions: int) -> np.ndarray:
    """cos(pos / theta^(2i/d)), i = 0..d/2-1, from the config alone."""
    theta, d = config_theta_and_dim(lm)
    return np.cos(np.arange(positions)[:, None] / theta ** (np.arange(0, d, 2) / d)[None])


def turned(vector: np.ndarray, position: int, lm) -> np.ndarray:
    """A head vector rotated to `position` by the formula, in float64 (rotate-half pairs (i, i + d/2))."""
    theta, d = config_theta_and_dim(lm)
    angle = position / theta ** (np.arange(0, d, 2) / d)
    a, b = vector[:d // 2].astype(np.float64), vector[d // 2:].astype(np.float64)
    return np.concatenate([a * np.cos(angle) - b * np.sin(angle), a * np.sin(angle) + b * np.cos(angle)])


def check_page(at, lm, text: str, layer: int, head: int, m: int, n: int, pair: int, shift: int, span: int):
    """Every number the page shows for this state, recomputed here from the model and the formula."""
    assert_no_exception(at)
    ids = token_ids(lm, text)
    length = len(ids)
    figs = figures(at)

    # 1. the rotation table shown is the model's, and equals the formula (the sinusoid values)
    np.testing.assert_allclose(plotly_array(figs[0]["data"][0]["z"]), formula_cos(lm, length), atol=2e-6)
    theta, d = config_theta_and_dim(lm)
    assert metric(at, "Base θ") == f"{theta:,.0f}" == "100,000"
    assert metric(at, "Pairs per head") == str(d // 2)
    assert metric(at, "Slowest pair") == f"{2 * np.pi * theta ** ((d - 2) / d):,.0f}"

    # 2-3. the model's q, k of this head, pair by pair
    kv = (head - 1) // 3
    tp = trace(lm, ids, record={"q", "k", "scores"}, layers=[layer - 1])
    q, k = tp.at("q", layer - 1)[head - 1], tp.at("k", layer - 1)[kv]
    q_m, k_n = turned(q[m], m, lm), turned(k[n], n, lm)
    model_raw = float(tp.at("scores", layer - 1)[head - 1, m, n]) * np.sqrt(d)
    parts = plotly_array(figs[3]["data"][0]["y"])
    half = d // 2
    np.testing.assert_allclose(parts, q_m[:half] * k_n[:half] + q_m[half:] * k_n[half:], atol=1e-3)
    assert parts.sum() == pytest.approx(model_raw, abs=1e-3)
    assert metric(at, "The model's score") == f"{model_raw:.4f}"
    arrow = figs[2]["data"][4]                     # the query's pair, turned to m
    assert arrow["name"] == f"query at m = {m}"
    np.testing.assert_allclose(plotly_array(arrow["x"])[1], q_m[pair - 1], atol=1e-4)
    np.testing.assert_allclose(plotly_array(arrow["y"])[1], q_m[pair - 1 + half], atol=1e-4)

    # 4. score against distance: formula at every distance, the model's score at the real one
    curve = figs[4]["data"]
    distances = plotly_array(curve[0]["x"])
    assert distances[-1] == span
    scale = float(np.linalg.norm(q[m]) * np.linalg.norm(k[n]))
    for dist in (0, 1, m - n, span // 2, span):
        expected = turned(q[m], dist, lm) @ turned(k[n], 0, lm)
        # the page turns by the model's float32 frequencies, rounded to ~6e-8: the angles drift with the distance
        assert plotly_array(curve[0]["y"])[dist] == pytest.approx(expected, abs=1e-7 * (1 + dist) * scale)
    assert plotly_array(curve[2]["x"])[0] == m - n
    assert plotly_array(curve[2]["y"])[0] == pytest.approx(model_raw, abs=1e-4)

    # 5. shift every position: measured independently on all layers
    base = trace(lm, ids, record={"scores"})
    moved = trace(lm, ids, record={"scores"}, interventions=Interventions(position_shift=shift))
    visible = np.isfinite(base["scores"])
    diff = float(np.abs(base["scores"][visible] - moved["scores"][visible]).max())
    assert diff <= 1e-4
    assert metric(at, "Max |score difference|") == f"{diff:.1e}"
    assert any("Equal to within 1e-4" in s.value for s in at.success)

    # 6. perplexity with RoPE as trained, off, and changed
    trained, off = perplexity(lm, ids).perplexity, perplexity(lm, ids, Interventions(rope=False)).perplexity
    assert off > trained
    assert metric(at, "Perplexity, RoPE as trained") == f"{trained:,.2f}"
    assert metric(at, "Perplexity, RoPE off") == f"{off:,.2f}"
    bars = figs[5]["data"][0]
    expected = [trained, perplexity(lm, ids, Interventions(rope_theta=10_000.0)).perplexity,
                perplexity(lm, ids, Interventions(rope_theta=500_000.0)).perplexity,
                perplexity(lm, ids, Interventions(position_scale=0.5)).perplexity, off]
    np.testing.assert_allclose(plotly_array(bars["y"]), expected, rtol=1e-6)


def test_defaults(lm):
    at = open_page("rope")
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (2, 3)
    length = len(token_ids(lm, DEFAULT_TEXT))
    assert (at.slider(key="query").value, at.slider(key="key").value, at.slider(key="pair").value) == \
        (length - 1, length - 2, 1)
    check_page(at, lm, DEFAULT_TEXT, 2, 3, length - 1, length - 2, 1, 100, 64)


def test_share_link_state(lm):
    text = "Once upon a time a small red fox lived in a hole under an old oak tree near the river."
    params = {"text": text, "layer": "7", "head": "8", "query": "12", "key": "3", "pair": "5", "shift": "37",
              "span": "1,024 tokens"}
    at = open_page("rope", params)
    assert at.text_area(key="text").value == text
    assert (at.slider(key="layer").value, at.slider(key="head").value, at.slider(key="query").value,
            at.slider(key="key").value, at.slider(key="pair").value) == (7, 8, 12, 3, 5)
    assert at.number_input(key="shift").value == 37
    check_page(at, lm, text, 7, 8, 12, 3, 5, 37, 1024)
    assert "Layer 1 alone" in shown_text(at)


def test_moving_a_slider_runs_no_forward_pass(monkeypatch):
    at = open_page("rope")
    before = figures(at)[2]

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a slider move")
    monkeypatch.setattr(ui.positions, "trace", no_forward)
    monkeypatch.setattr(engine.inside.positions, "trace", no_forward)
    monkeypatch.setattr(ui.positions, "perplexity", no_forward)
    for key, value in (("pair", 9), ("key", 4), ("layer", 11)):
        at.slider(key=key).set_value(value).run()
        assert_no_exception(at)
    assert figures(at)[2] != before


def test_a_two_token_text_and_an_empty_one(lm):
    at = open_page("rope", {"text": "Hello world"})
    assert_no_exception(at)
    assert len(token_ids(lm, "Hello world")) == 2
    assert at.get("plotly_chart")
    at = open_page("rope", {"text": "Hi"})
    assert_no_exception(at)
    assert any("at least two tokens" in i.value for i in at.info)
    at = open_page("rope", {"text": "  "})
    assert any("Type a sentence" in i.value for i in at.info)
