"""The MoE page runs SmolLM2 with its FFNs split into 8 experts: the perplexities, the routing and the k sweep it
shows are recomputed here from the model; k = 8 is the dense model; it follows its share link."""
import json

import numpy as np
import pytest
import torch

from engine.inside.moe import ExpertRouting, expert_neurons, moe_interventions
from engine.model.perplexity import perplexity, scores_from_logits
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text


def charts(at) -> dict[str, dict]:
    return {json.loads(c.proto.spec)["layout"].get("title", {}).get("text", ""): json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def chart_titled(at, start: str) -> dict | None:
    found = [f for title, f in charts(at).items() if title.startswith(start)]
    return found[0] if found else None


def metric(at, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, [m.label for m in at.metric]
    return values[0]


def fresh_perplexity(lm, ids, interventions) -> float:
    """Straight from a traced pass, not through engine.model.perplexity's cache (which the page's job filled)."""
    nll, _ = scores_from_logits(ids, trace(lm, ids, interventions=interventions).logits)
    return float(np.exp(nll.mean()))


def test_defaults_and_the_sweep(lm):
    at = open_page("moe")
    assert_no_exception(at)
    ids = token_ids(lm, at.text_area(key="text").value)
    assert at.slider(key="layers").value == (1, 30) and at.slider(key="k").value == 4

    # The headline: dense against 4 of 8 experts in every layer, recomputed here.
    dense = fresh_perplexity(lm, ids, Interventions())
    four = fresh_perplexity(lm, ids, Interventions(ffn_product_transform=ExpertRouting(frozenset(range(30)), 4, lm=lm)))
    assert metric(at, "Perplexity, dense") == f"{dense:,.1f}"
    assert metric(at, "Perplexity, 4 of 8 experts") == f"{four:,.1f}" and four > 2 * dense
    active = lm.card.parameters - 30 * 3 * 576 * 1536 * 4 // 8     # 30 layers drop 4 of 8 slices of their FFN
    assert metric(at, "Active parameters per token") == f"{active / 1e6:,.1f} M"

    # The routing of layer 10: each token's shares, the 4 experts kept, the load, and the exactness check.
    routing = chart_titled(at, "Layer 10: each expert's share")
    shares = plotly_array(routing["data"][0]["z"])
    assert shares.shape == (len(ids), 8) and np.allclose(shares.sum(1), 100, atol=0.1)
    rings = routing["data"][1]
    assert len(rings["x"]) == 4 * len(ids)
    sparse_before = trace(lm, ids, record={"product"}, layers=[9],
                          interventions=moe_interventions(lm, range(9), 4))   # layers 1-9 sparse feed layer 10
    product = sparse_before.at("product", 9).astype(np.float64)
    down = lm.model.model.layers[9].mlp.down_proj.weight.detach().numpy().astype(np.float64)
    norms = np.stack([np.linalg.norm(product[:, e] @ down[:, e].T, axis=1) for e in expert_neurons(lm, 9)], 1)
    np.testing.assert_allclose(shares, 100 * norms / norms.sum(1, keepdims=True), atol=0.02)
    kept = {(r, c) for r, c in zip(rings["y"], rings["x"])}
    labels = routing["data"][0]["y"]
    assert kept == {(labels[t], f"E{e + 1}") for t in range(len(ids)) for e in np.argsort(-norms[t])[:4]}
    load = chart_titled(at, "Layer 10: load on each expert")["data"][0]["y"]
    counts = np.zeros(8)
    for _, column in kept:
        counts[int(column[1:]) - 1] += 1
    np.testing.assert_allclose(load, 100 * counts / len(ids))
    assert float(metric(at, "8 experts summed − dense FFN")) < 1e-5 * np.abs(product @ down.T).max()

    # The sweep over k (a job): perplexity rises as k falls, k = 8 is the dense model, points recomputed here.
    run_until(at, lambda page: chart_titled(page, "Perplexity of your text") is not None)
    assert_no_exception(at)
    sweep = chart_titled(at, "Perplexity of your text")["data"]
    largest, random = plotly_array(sweep[0]["y"]), plotly_array(sweep[1]["y"])
    assert sweep[0]["x"] == list(range(1, 9))
    assert np.all(np.diff(largest) < 0), largest                 # fewer experts, higher perplexity, every step
    assert largest[-1] == random[-1] == pytest.approx(dense)
    assert np.all(random[:4] > largest[:4])                       # choosing beats chance when few are kept
    assert largest[3] == pytest.approx(four)
    one = Interventions(ffn_product_transform=ExpertRouting(frozenset(range(30)), 1, lm=lm))
    assert largest[0] == pytest.approx(fresh_perplexity(lm, ids, one), rel=1e-6)


def test_share_link_state(lm):
    text = "The cat sat on the mat because the mat was warm, and the dog lay by the door."
    at = open_page("moe", {"text": text, "layers": ["12", "5"], "k": "2", "grouping": "in index order", "layer": "7"})
    assert_no_exception(at)
    ids = token_ids(lm, text)
    assert at.slider(key="k").value == 2 and at.slider(key="layer").value == 7
    assert at.slider(key="layers").value == (12, 5) and at.segmented_control(key="grouping").value == "index"
    sparse = perplexity(lm, ids, moe_interventions(lm, range(4, 12), 2, "index"))
    assert metric(at, "Perplexity, 2 of 8 experts") == f"{sparse.perplexity:,.1f}"
    active = lm.card.parameters - 8 * 2_654_208 * 6 // 8          # 8 layers keep 2 of 8 slices of their FFN
    assert f"{active / 1e6:,.1f}M" in at.dataframe[0].value["active (computed)"].tolist()
    rings = chart_titled(at, "Layer 7: each expert's share")["data"][1]
    assert len(rings["x"]) == 2 * len(ids)
    assert "SmolLM2, 8 sparse layers (this page)" in at.dataframe[0].value["model"].tolist()


def test_all_eight_experts_is_the_dense_model(lm):
    at = open_page("moe", {"k": "8"})
    assert_no_exception(at)
    assert metric(at, "Perplexity, 8 of 8 experts") == metric(at, "Perplexity, dense")
    assert metric(at, "Active parameters per token") == f"{lm.card.parameters / 1e6:,.1f} M"


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "Hi"}, {"text": "🍓 日本語 <script>x</script> $y$ **b**"},
    {"layers": ["0", "99"], "k": "0", "grouping": "alphabetical", "layer": "-3"},
    {"layers": ["7", "7"], "layer": "20"},
])
def test_odd_links_fall_back(lm, params):
    at = open_page("moe", params)
    assert_no_exception(at)
    if params.get("text") == "":
        assert "Type a sentence" in shown_text(at)
    elif params.get("text") == "Hi":
        assert "Add a few more words" in shown_text(at)
    else:
        assert at.get("plotly_chart") and "Perplexity, dense" in shown_text(at)
    if params.get("layers") == ["7", "7"]:
        assert "Layer 7 is the only sparse layer." in shown_text(at)
        assert any(title.startswith("Layer 7: each expert's share") for title in charts(at))
