"""The multi-head page shows all heads of the model on the user's text, the selected head's statistics and
findings computed from them, follows its share link, and survives bad input."""
import json
import re

import numpy as np
import pytest

from engine.inside.attention import capture, findings, head_stats
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

DEFAULT_TEXT = ("The cat sat on the mat because the mat was warm. Then the dog sat on the mat too, "
                "and the cat was not happy about it.")


def chart(at, key: str) -> dict:
    """The figure of the chart with widget key `key` (its element id ends with "-<key>")."""
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise KeyError(key)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_defaults_show_every_head_and_the_real_findings(lm):
    at = open_page("multi-head-attention")
    assert_no_exception(at)
    cap = capture(lm, DEFAULT_TEXT)
    stats = head_stats(cap.attentions)
    layer, head = at.slider(key="layer").value, at.slider(key="head").value
    L, H = layer - 1, head - 1
    # the 3 x 3 grid: 9 heads of the chosen layer, each the model's own map, each row summing to 1
    grid = chart(at, "grid")
    maps = [plotly_array(d["z"]) for d in grid["data"] if d.get("coloraxis") == "coloraxis"]
    assert len(maps) == 9
    lower = np.tril_indices(cap.length)
    for h, shown in enumerate(maps):
        np.testing.assert_allclose(np.nansum(shown, axis=1), 1.0, atol=1e-3)
        np.testing.assert_allclose(shown[lower], cap.attentions[L, h][lower], atol=1e-4)
    # the overview: one clickable marker per head (270), one hover text each
    over = chart(at, "overview")
    markers = next(d for d in over["data"] if d["type"] == "scatter")
    assert len(markers["text"]) == 270 and markers["text"][0].startswith("layer 1 head 1")
    # the selected head's numbers are the statistics of the model's weights
    assert metric(at, "On the previous token") == f"{stats.previous_token_share[L, H]:.0%}"
    assert metric(at, "On the first token") == f"{stats.first_token_share[L, H]:.0%}"
    assert metric(at, "Entropy") == f"{stats.entropy_bits[L, H]:.2f} bits"
    # the written findings name exactly the heads the statistics find
    found = findings(stats)
    text = shown_text(at)
    named = re.search(r"Previous-token heads\.\*\* (\d+) heads", text)
    assert named and int(named.group(1)) == len(found.previous_token_heads) > 0
    for l, h, share in found.previous_token_heads:
        assert f"L{l + 1}H{h + 1} ({share:.0%})" in text
    assert f"In {len(found.sink_layers)} of 30 layers" in text
    # the statistics heatmaps carry the same numbers
    sink = plotly_array(chart(at, "sink_map")["data"][0]["z"])
    np.testing.assert_allclose(sink, stats.first_token_share.T, atol=1e-4)


def test_share_link_state_is_restored(lm):
    text = "one two three four five six seven eight nine ten"
    at = open_page("multi-head-attention", {"text": text, "layer": "17", "head": "1"})
    assert_no_exception(at)
    assert (at.slider(key="layer").value, at.slider(key="head").value) == (17, 1)
    cap = capture(lm, text)
    stats = head_stats(cap.attentions)
    assert metric(at, "On the previous token") == f"{stats.previous_token_share[16, 0]:.0%}"
    big = chart(at, "big")
    shown = plotly_array(big["data"][1]["z"])
    lower = np.tril_indices(cap.length)
    np.testing.assert_allclose(shown[lower], cap.attentions[16, 0][lower], atol=1e-4)
    assert any("Layer 17, head 1" == s.value for s in at.subheader)


def test_changing_the_layer_updates_the_grid(lm):
    at = open_page("multi-head-attention", {"text": "Red, green, blue, red, green, blue"})
    before = chart(at, "grid")["data"][0]["z"]
    at.slider(key="layer").set_value(20).run()
    assert_no_exception(at)
    cap = capture(lm, "Red, green, blue, red, green, blue")
    shown = plotly_array(chart(at, "grid")["data"][0]["z"])
    lower = np.tril_indices(cap.length)
    np.testing.assert_allclose(shown[lower], cap.attentions[19, 0][lower], atol=1e-4)
    assert chart(at, "grid")["data"][0]["z"] != before


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "   "}, {"text": "Hi"}, {"text": "a " * 50_000},
    {"text": "🍓 emoji 日本語 العربية Ελληνικά *bold* `x` [a](b)"}, {"text": "ctrl \x00\x07\x1b[0m chars"},
    {"text": "<script>alert(1)</script>"}, {"layer": "banana", "head": "-3", "unknown": "x"},
    {"layer": "0", "head": "99"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("multi-head-attention", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text", "x").strip() == "":
        assert "Type a few sentences" in text
    elif params.get("text") == "Hi":
        assert "at least two tokens" in text
    else:
        assert "Attention sink" in text
    if len(params.get("text", "")) > 10_000:
        assert "Cut to the first" in text
    assert 1 <= at.slider(key="layer").value <= 30 and 1 <= at.slider(key="head").value <= 9
