"""The GQA page shows SmolLM2's real head layout, cache bytes read from real tensors, the maps of heads that
share keys, and the measured cost of pooling the KV heads into one; it follows its share link."""
import json

import numpy as np
import pytest
import torch

import ui.gqa
from engine.inside.gqa import head_differences, pooled_interventions, sibling_summary
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text


def charts(at) -> dict[str, dict]:
    return {json.loads(c.proto.spec)["layout"].get("title", {}).get("text", ""): json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def chart_titled(at, start: str) -> dict:
    found = [f for title, f in charts(at).items() if title.startswith(start)]
    assert found, list(charts(at))
    return found[0]


def metric(at, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, [m.label for m in at.metric]
    return values[0]


def real_cache_bytes_per_token(lm, ids) -> float:
    """A real pass of the model with use_cache, its cache tensors weighed by hand."""
    from transformers import DynamicCache
    cache = DynamicCache(config=lm.model.config)
    with torch.inference_mode():
        lm.model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
    total = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    return total / len(ids)


def test_defaults(lm):
    at = open_page("gqa")
    assert_no_exception(at)
    text = at.text_area(key="text").value
    ids = token_ids(lm, text)
    cfg = lm.model.config

    # 1. The layout, from the config.
    assert metric(at, "Query heads") == str(cfg.num_attention_heads) == "9"
    assert metric(at, "Key/value heads") == str(cfg.num_key_value_heads) == "3"
    diagram = chart_titled(at, "Which key/value head")
    query_boxes = next(t for t in diagram["data"] if t.get("text", [""])[0] == "Q1")
    assert query_boxes["customdata"] == [1, 1, 1, 2, 2, 2, 3, 3, 3]

    # 2. The three heads of KV head 1 in layer 3: their real maps, and the distances shown.
    maps = chart_titled(at, "Layer 3: the 3 query heads that read KV head 1")
    probs = trace(lm, ids, record={"probs"}, layers=[2]).at("probs", 2)
    for h in range(3):
        shown = plotly_array(maps["data"][h]["z"])
        lower = np.tril_indices(len(ids))
        np.testing.assert_allclose(shown[lower], probs[h][lower], atol=1e-4)
    assert not np.allclose(probs[0], probs[1], atol=0.05)          # same keys, different attention
    summary = sibling_summary(head_differences(probs), ((0, 1, 2), (3, 4, 5), (6, 7, 8)))
    assert metric(at, "Heads sharing a KV head") == f"{summary.within:.2f}"
    assert metric(at, "Heads with different KV heads") == f"{summary.across:.2f}"

    # 3. Bytes per token: the real cache equals the formula; MHA and MQA at the model's shape.
    per_token = real_cache_bytes_per_token(lm, ids)
    formula = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * 64 * 4
    assert per_token == formula == 46_080
    assert metric(at, "GQA, 3 (as built)") == f"{formula:,} B"
    assert metric(at, "MHA, 9 KV heads") == f"{3 * formula:,} B"
    pooled = trace(lm, ids, record={"k", "v"}, interventions=Interventions(kv_groups=1))
    assert metric(at, "MQA, 1 KV head") == f"{(pooled['k'].nbytes + pooled['v'].nbytes) // len(ids):,} B" \
        == f"{formula // 3:,} B"
    memory = chart_titled(at, "SmolLM2's KV cache for one sequence")
    lines = {t["name"]: (t["x"], plotly_array(t["y"])) for t in memory["data"] if t["name"].endswith(("head", "heads"))}
    (_, mha), (gqa_x, gqa), (_, mqa) = (lines[n] for n in ("MHA, 9 KV heads", "GQA, 3 KV heads", "MQA, 1 KV head"))
    assert gqa_x == [1024, 2048, 4096, 8192]                        # solid up to the model's context
    np.testing.assert_allclose(gqa, [formula * t / 1e9 for t in gqa_x])
    np.testing.assert_allclose(mha, 3 * gqa) and np.testing.assert_allclose(mqa, gqa / 3)
    assert memory["layout"]["yaxis"]["type"] == "log"
    table = at.dataframe[0].value
    llama70 = table[table["model"] == "LLaMA-2-70B"].iloc[0]
    assert llama70["as built bytes/token"] == 2 * 80 * 8 * 128 * 2 and llama70["MHA bytes/token"] == 8 * 327_680

    # 4. MQA-ify: the perplexity with 3 KV heads and with one pooled head, recomputed here.
    before = perplexity(lm, ids).perplexity
    after = perplexity(lm, ids, Interventions(kv_groups=1)).perplexity
    assert after > 10 * before
    assert metric(at, "Perplexity, 3 KV heads") == f"{before:,.1f}"
    assert metric(at, "Perplexity, 1 KV head") == f"{after:,.1f}"
    assert "Pooled to one KV head: every layer." in shown_text(at)
    bars = chart_titled(at, "Surprise at each token")["data"]
    np.testing.assert_allclose(plotly_array(bars[0]["y"]), perplexity(lm, ids).token_nll / np.log(2), rtol=1e-5)
    assert np.mean(plotly_array(bars[1]["y"])) > np.mean(plotly_array(bars[0]["y"]))


def test_share_link_state(lm):
    text = "Alice gave Bob the book because Bob had asked Alice for it twice."
    at = open_page("gqa", {"text": text, "layer": "12", "kv": "2", "ctx": "32k", "pooled": ["20", "8"]})
    assert_no_exception(at)
    ids = token_ids(lm, text)
    assert at.slider(key="layer").value == 12 and at.select_slider(key="ctx").value == 32768
    maps = chart_titled(at, "Layer 12: the 3 query heads that read KV head 2")
    probs = trace(lm, ids, record={"probs"}, layers=[11]).at("probs", 11)
    np.testing.assert_allclose(np.nan_to_num(plotly_array(maps["data"][0]["z"])), np.tril(probs[3]), atol=1e-4)
    assert "At 32,768 tokens: MHA 4.53 GB, GQA 1.51 GB, MQA 503.32 MB" in shown_text(at)
    some = perplexity(lm, ids, pooled_interventions(lm, 7, 19)).perplexity      # layers 8-20, 1-based
    assert metric(at, "Perplexity, 1 KV head") == f"{some:,.1f}"
    assert "Pooled to one KV head: layers 8-20." in shown_text(at)
    assert some > perplexity(lm, ids).perplexity


def test_choosing_another_kv_head_runs_no_forward_pass(lm, monkeypatch):
    at = open_page("gqa")
    before = chart_titled(at, "Layer 3: the 3 query heads that read KV head 1")

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a KV-head change")
    monkeypatch.setattr(ui.gqa, "trace", no_forward)
    monkeypatch.setattr(ui.gqa, "perplexity", no_forward)
    at.segmented_control(key="kv").set_value(3).run()
    assert_no_exception(at)
    after = chart_titled(at, "Layer 3: the 3 query heads that read KV head 3")
    assert after["data"][0]["z"] != before["data"][0]["z"]


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "Hi"}, {"text": "🍓 日本語 <script>x</script> $y$"},
    {"layer": "0", "kv": "7", "ctx": "banana", "pooled": ["-4", "400"]},
])
def test_odd_links_fall_back(lm, params):
    at = open_page("gqa", params)
    assert_no_exception(at)
    if params.get("text") == "":
        assert "Type a sentence" in shown_text(at)
    elif params.get("text") == "Hi":
        assert "Add a few more words" in shown_text(at)
    else:
        assert at.get("plotly_chart") and "Perplexity, 3 KV heads" in shown_text(at)
