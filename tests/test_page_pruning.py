"""The pruning page: 0% sparsity is the float32 model exactly, 70% is far worse than 10%, and the numbers shown
are the engine's measurements."""
import json

import numpy as np

from engine.serving.compression import damage, make_pruner
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from tests.test_page_quantization import DEFAULT


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def has_sweep(at):
    return any('"sparsity"' in c.proto.spec for c in at.get("plotly_chart"))


def test_defaults_measure_half_sparsity_and_the_sweep_shows_the_cliff(lm):
    at = open_page("pruning")
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT)
    magnitude = damage(lm, ids, make_pruner(lm, 0.5, "magnitude", "unstructured", ()))
    wanda = damage(lm, ids, make_pruner(lm, 0.5, "wanda", "unstructured", tuple(ids)))
    assert metric(at, "Perplexity") == f"{magnitude.perplexity:,.2f}"
    assert metric(at, "With wanda instead") == f"{wanda.perplexity:,.2f}"
    run_until(at, has_sweep, timeout=400)
    chart = next(c for c in at.get("plotly_chart") if '"sparsity"' in c.proto.spec)
    perplexity = json.loads(chart.proto.spec)["data"][0]
    by_sparsity = {round(x, 2): y for x, y in zip(perplexity["x"], perplexity["y"])}
    assert len(by_sparsity) == 7, "the sweep stopped before its last sparsity"
    assert by_sparsity[0.0] == magnitude.base_perplexity          # 0%: the float32 model, exactly
    assert by_sparsity[0.7] > 3 * by_sparsity[0.1]                  # 70% is clearly worse than 10%


def test_share_link_wanda_two_four(lm):
    at = open_page("pruning", {"method": "Wanda", "pattern": "2:4", "sparsity": "0.8", "layer": "2",
                               "matrix": "self_attn.q_proj"})
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT)
    expected = damage(lm, ids, make_pruner(lm, 0.5, "wanda", "2:4", tuple(ids)))   # 2:4 is always 50%
    assert metric(at, "Perplexity") == f"{expected.perplexity:,.2f}"
    heat = next(c for c in at.get("plotly_chart") if "Heatmap" in c.proto.spec or '"heatmap"' in c.proto.spec)
    codes = plotly_array(json.loads(heat.proto.spec)["data"][0]["z"]).astype(int)
    kept_by_wanda = (codes >= 2).reshape(codes.shape[0], -1, 4).sum(-1)
    assert (kept_by_wanda == 2).all()                              # 2 of every 4 inputs kept, in every row
    assert "The two methods agree on" in shown_text(at)
