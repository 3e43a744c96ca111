"""The feed-forward page shows SmolLM2's own FFN neurons, their corpus favourites, what they write and what silencing
them changes; it follows its share link and survives odd input. Every number is recomputed here."""
import json

import numpy as np
import pytest

import ui.feed_forward
from engine.runtime.jobs import job_registry
from engine.inside.neurons import ablate, ffn_activations, load_corpus, logit_effect, random_neurons
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text

COUNTING = "One, two, three, four,"


def bits(kl: float) -> str:
    return f"{kl:.4f}" if kl >= 1e-4 or kl == 0 else f"{kl:.1e}"


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label or m.label.startswith(label)]
    assert found, [m.label for m in at.metric]
    return found[0]


def corpus_table_shown(at) -> bool:
    return any("document" in d.value.columns for d in at.dataframe)


def corpus_table(at):
    return next(d.value for d in at.dataframe if "document" in d.value.columns)


def check_corpus_row(lm, row, layer: int, neuron: int) -> None:
    """The shown example is the product of that neuron at that token of that corpus document, recomputed."""
    doc = next(d for d in load_corpus() if d.title == row["document"])
    ids = token_ids(lm, doc.text)
    tp = trace(lm, ids, record={"product"}, layers=[layer], interventions=Interventions(exit_layer=layer + 1))
    products = tp.at("product", layer)[:, neuron]
    position = int(np.argmin(np.abs(products - row["product"])))
    assert products[position] == pytest.approx(row["product"], abs=1e-5)
    token = decode_each(lm, [ids[position]])[0]
    assert row["token"] == token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")


def test_defaults_counting_neuron_its_corpus_and_its_ablation(lm):
    at = open_page("feed-forward")
    assert_no_exception(at)
    ids = token_ids(lm, COUNTING)
    last = len(ids) - 1
    acts = ffn_activations(lm, ids, 26)
    top = int(acts.ranked(last, 1)[0])
    assert metric(at, "Most active neuron").value == str(top + 1) == "1520"
    np.testing.assert_allclose(plotly_array(chart(at, "neurons")["data"][0]["y"]), acts.product[last], atol=1e-6)
    along = chart(at, "along")["data"][0]
    np.testing.assert_allclose(plotly_array(along["y"]), acts.product[:, top], atol=1e-6)

    # Silencing the top neuron changes the next-token distribution, by the amount shown.
    silenced, = ablate(lm, ids, last, frozenset({(26, top)}))
    assert silenced.kl_bits > 0.01
    assert metric(at, "Change, KL (bits)").value == bits(silenced.kl_bits)
    favourite = metric(at, "P(")
    assert favourite.label == "P(␣five)" and silenced.top_id == token_ids(lm, " five")[0]
    assert favourite.value == f"{100 * silenced.ablated[silenced.top_id]:.2f}%"
    assert f"was {100 * silenced.base[silenced.top_id]:.1f}%" in favourite.proto.delta
    assert silenced.ablated[silenced.top_id] < silenced.base[silenced.top_id] - 0.05
    control, = ablate(lm, ids, last, frozenset((26, n) for n in random_neurons(26, 1, 1536, frozenset({top}))))
    bars = chart(at, "silenced")["data"]
    assert [b["name"] for b in bars] == ["intact model", f"neuron {top + 1} silenced", "1 random neuron silenced"]
    shown_ids = np.argsort(-silenced.base, kind="stable")[:len(bars[0]["x"])]
    np.testing.assert_allclose(bars[1]["x"], 100 * silenced.ablated[shown_ids], rtol=1e-9)
    np.testing.assert_allclose(bars[2]["x"], 100 * control.ablated[shown_ids], rtol=1e-9)

    # The FFN's share of a block, counted here from the model's tensors.
    block = dict(lm.model.model.layers[0].named_parameters())
    ffn = sum(p.numel() for name, p in block.items() if name.startswith("mlp."))
    attention = sum(p.numel() for name, p in block.items() if name.startswith("self_attn."))
    assert ffn == 3 * lm.model.config.hidden_size * lm.model.config.intermediate_size
    assert metric(at, "FFN share of a block").value == f"{100 * ffn / sum(p.numel() for p in block.values()):.1f}%"
    assert metric(at, "Attention in a block").proto.delta == f"{attention / 1e6:.2f}M"
    parts = chart(at, "params")["data"]
    assert {p["name"]: p["x"][0] for p in parts} == {name.split(".")[-2]: p.numel() for name, p in block.items()}

    # What the neuron writes: number words, per unit of product at this token.
    effect = logit_effect(lm, 26, top)
    raised = chart(at, "effect")["data"][0]
    np.testing.assert_allclose(raised["x"], effect.scores[list(effect.promoted)] / acts.final_rms[last], rtol=1e-5)

    # The corpus index is built as a job; once done, its top example is recomputed here.
    run_until(at, corpus_table_shown, pause=1.0)   # rare reruns: the job, not the polling, should get the CPU
    assert_no_exception(at)
    table = corpus_table(at)
    assert list(table["product"]) == sorted(table["product"], reverse=True) and len(table) == 8
    check_corpus_row(lm, table.iloc[0], 26, top)
    assert "1,725 tokens of 19 short documents" in shown_text(at)


def test_share_link_restores_a_negative_neuron_and_a_larger_silencing(lm):
    text = "The capital of France is"
    at = open_page("feed-forward", {"text": text, "layer": "25", "token": "5", "rank": "1", "neuron": "1006",
                                    "silence": "4", "show": "gate", "side": "negative"})
    assert_no_exception(at)
    assert at.slider(key="layer").value == 25 and at.slider(key="silence").value == 4
    ids = token_ids(lm, text)
    acts = ffn_activations(lm, ids, 24)
    np.testing.assert_allclose(plotly_array(chart(at, "neurons")["data"][0]["y"]), acts.gate[4], atol=1e-6)
    assert chart(at, "neurons")["layout"]["yaxis"]["title"]["text"] == "gate"
    neuron = 1005
    assert acts.product[4, neuron] < -5    # this neuron fires negative on "is" after "The capital of France"
    assert any(s.value.startswith("Neuron 1006 of layer 25") for s in at.subheader)

    chosen = [neuron] + [int(n) for n in acts.ranked(4) if n != neuron][:3]
    silenced, = ablate(lm, ids, 4, frozenset((24, n) for n in chosen))
    control, = ablate(lm, ids, 4, frozenset((24, n) for n in random_neurons(24, 4, 1536, frozenset(chosen))))
    kl = metric(at, "Change, KL (bits)")
    assert kl.value == bits(silenced.kl_bits) and kl.proto.delta == f"random: {bits(control.kl_bits)}"
    assert silenced.kl_bits > control.kl_bits    # the most active neurons matter more than random ones here
    assert chart(at, "silenced")["data"][1]["name"] == "4 neurons silenced"

    effect = logit_effect(lm, 24, neuron)
    lowered = chart(at, "effect")["data"][1]
    np.testing.assert_allclose(lowered["x"], effect.scores[list(effect.suppressed)] / acts.final_rms[4], rtol=1e-5)
    assert "is negative, so it works the other way round" in shown_text(at)


def test_reshaping_controls_run_no_forward_pass(lm, monkeypatch):
    at = open_page("feed-forward")
    run_until(at, corpus_table_shown, pause=1.0)
    before = plotly_array(chart(at, "neurons")["data"][0]["y"])

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran on a control that only reshapes the view")
    for name in ("ffn_activations", "ablate", "build_corpus_index", "logit_effect"):
        monkeypatch.setattr(ui.feed_forward, name, no_forward)
    at.segmented_control(key="show").set_value("up").run()
    at.segmented_control(key="side").set_value("negative").run()
    assert_no_exception(at)
    after = plotly_array(chart(at, "neurons")["data"][0]["y"])
    np.testing.assert_allclose(after, ffn_activations(lm, token_ids(lm, COUNTING), 26).up[-1], atol=1e-6)
    assert not np.allclose(after, before)
    table = corpus_table(at)
    assert (table["product"] < 0).all() and list(table["product"]) == sorted(table["product"])
    monkeypatch.undo()
    check_corpus_row(lm, table.iloc[0], 26, 1519)


def test_preset_sets_text_and_layer():
    at = open_page("feed-forward")
    at.button(key="preset-2").click().run()
    assert_no_exception(at)
    assert at.text_area(key="text").value.startswith("She was born in Paris")
    assert at.slider(key="layer").value == 26
    job_registry().get(("ffn corpus index", 25)).request_stop()   # its corpus index is not needed here


@pytest.mark.parametrize("params", [
    {"text": "Hi"}, {"text": "   "}, {"text": "🍓 emoji 日本語 <b>x</b> $y$ :red[z]"},
    {"neuron": "99999", "rank": "0", "silence": "1000", "token": "-4", "layer": "abc"},
])
def test_odd_input_is_handled(lm, params):
    at = open_page("feed-forward", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text", "x").strip() == "":
        assert "Type a text above" in text
    else:
        assert at.get("plotly_chart")
