"""engine.inside.neurons: FFN neurons read from the traced forward agree with the model's own weights; the corpus index
holds each neuron's true extremes; ablation, logit effects and parameter counts are checked independently."""
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charts.neurons import CHOSEN, NEURON, RANKED, ablation_bars, neuron_values, parameter_bars
from engine.inside import neurons as nr
from engine.decoding.generation import softmax
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import Interventions, trace

TEXT = "One, two, three, four,"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


@pytest.fixture(scope="module")
def acts(lm, ids):
    return nr.ffn_activations(lm, ids, 26)


def test_activations_are_the_swiglu_of_the_models_own_projections(lm, ids, acts):
    mlp = lm.model.model.layers[26].mlp
    normed = torch.tensor(trace(lm, ids, record={"ffn_norm_out"}, layers=[26]).at("ffn_norm_out", 26))
    with torch.inference_mode():
        gate, up = mlp.gate_proj(normed), mlp.up_proj(normed)
        np.testing.assert_allclose(acts.gate, gate.numpy(), atol=1e-5)
        np.testing.assert_allclose(acts.up, up.numpy(), atol=1e-5)
        np.testing.assert_allclose(acts.act, F.silu(gate).numpy(), atol=1e-5)
        np.testing.assert_allclose(acts.product, (F.silu(gate) * up).numpy(), atol=1e-5)
    assert acts.product.shape == (len(ids), lm.model.config.intermediate_size)
    assert not acts.product.flags.writeable


def test_final_rms_is_what_the_final_norm_divides_by(lm, ids, acts):
    tp = trace(lm, ids, record={"final_norm"})
    resid = trace(lm, ids, record={"resid_out"}, layers=[29]).at("resid_out", 29)
    gain = lm.model.model.norm.weight.detach().numpy()
    np.testing.assert_allclose(tp.final_norm, gain * resid / acts.final_rms[:, None], rtol=1e-4, atol=1e-5)


def test_ranked_orders_neurons_by_the_size_of_their_product(acts):
    last = acts.product.shape[0] - 1
    ranked = acts.ranked(last)
    sizes = np.abs(acts.product[last][ranked])
    assert sorted(ranked.tolist()) == list(range(acts.product.shape[1]))
    assert np.all(np.diff(sizes) <= 0)
    assert acts.ranked(last, 5).tolist() == ranked[:5].tolist()
    with pytest.raises(ValueError):
        acts.measure("nonsense")


def test_logit_effect_reads_the_down_column_through_the_tied_embedding(lm):
    effect = nr.logit_effect(lm, 26, 1519, k=10)
    inner = lm.model.model
    with torch.inference_mode():
        expected = inner.embed_tokens.weight @ (inner.norm.weight * inner.layers[26].mlp.down_proj.weight[:, 1519])
    np.testing.assert_allclose(effect.scores, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert list(effect.promoted) == np.argsort(-effect.scores, kind="stable")[:10].tolist()
    assert effect.scores[effect.suppressed[0]] == effect.scores.min()
    # the "a number comes next" neuron of the counting preset writes number words
    assert {" five", " three", " four"} & set(decode_each(lm, list(effect.promoted)))


def test_direct_logit_effect_of_a_last_layer_neuron_matches_its_ablation(lm, ids):
    """In the last layer nothing comes after the FFN but the final norm, so silencing a neuron changes the logits
    by -product x scores / rms, up to the small change of the rms itself."""
    last_layer = lm.card.layers - 1
    a = nr.ffn_activations(lm, ids, last_layer)
    pos = len(ids) - 1
    neuron = int(a.ranked(pos, 1)[0])
    direct = a.product[pos, neuron] * nr.logit_effect(lm, last_layer, neuron).scores / a.final_rms[pos]
    intact = trace(lm, ids).logits[pos]
    silenced = trace(lm, ids, interventions=Interventions(ablate_neurons=frozenset({(last_layer, neuron)}))).logits[pos]
    change = intact - silenced
    assert np.corrcoef(change, direct)[0, 1] > 0.95
    np.testing.assert_allclose(change, direct, atol=0.15 * np.abs(direct).max())


def test_kl_divergence_in_bits():
    assert nr.kl_divergence_bits([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.5 + 0.5 * np.log2(2 / 3))
    assert nr.kl_divergence_bits([1.0, 0.0], [1.0, 0.0]) == 0.0
    assert nr.kl_divergence_bits([0.0, 1.0], [0.5, 0.5]) == pytest.approx(1.0)


def test_ablating_a_neuron_equals_zeroing_its_down_column(lm, ids):
    """Two independent routes to the same surgery: the product set to 0, or the neuron's W_down column set to 0."""
    pos, neuron = len(ids) - 1, 1519
    silenced, empty = nr.ablate(lm, ids, pos, frozenset({(26, neuron)}), frozenset())

    def zero_column(name, weight):
        if name != "layers.26.mlp.down_proj":
            return weight
        out = weight.clone()
        out[:, neuron] = 0.0
        return out

    by_weights = softmax(trace(lm, ids, interventions=Interventions(weight_transform=zero_column)).logits[pos])
    np.testing.assert_allclose(silenced.ablated, by_weights, atol=1e-6)
    assert silenced.kl_bits == pytest.approx(nr.kl_divergence_bits(silenced.base, by_weights), rel=1e-3, abs=1e-6)
    assert silenced.kl_bits > 0.05 and silenced.top_shift < -0.05       # " five" loses a lot
    assert empty.kl_bits == 0.0 and np.array_equal(empty.base, empty.ablated)
    with pytest.raises(ValueError):
        nr.ablate(lm, ids, len(ids), frozenset())


def test_random_neurons_are_seeded_and_avoid_the_chosen_ones():
    first = nr.random_neurons(3, 16, 1536, avoid=frozenset({1, 2, 3}))
    assert first == nr.random_neurons(3, 16, 1536, avoid=frozenset({1, 2, 3}))
    assert len(first) == 16 and not first & {1, 2, 3} and all(0 <= n < 1536 for n in first)
    assert first != nr.random_neurons(4, 16, 1536, avoid=frozenset({1, 2, 3}))
    assert len(nr.random_neurons(0, 10, 8, avoid=frozenset(range(5)))) == 3


def test_parameter_split_adds_up_to_the_whole_model(lm):
    split = nr.parameter_split(lm)
    cfg = lm.model.config
    d, ffn = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * cfg.hidden_size // cfg.num_attention_heads
    assert split.ffn == 3 * d * ffn
    assert split.attention == 2 * d * d + 2 * d * kv
    assert split.norms == 2 * d
    assert split.embedding + split.layers * split.per_layer + split.final_norm == split.total == lm.card.parameters
    assert split.ffn_share_of_layer == pytest.approx(split.ffn / (split.ffn + split.attention + split.norms))


def test_the_bundled_corpus_is_varied_and_says_where_it_comes_from():
    docs = nr.load_corpus()
    assert len(docs) >= 15 and sum(len(d.text) for d in docs) > 4000
    assert all(d.title and d.text.strip() and (d.source == "self-written" or d.source.startswith("public domain"))
               for d in docs)
    assert len({d.title for d in docs}) == len(docs)


@pytest.fixture(scope="module")
def small_index(lm):
    docs = (nr.CorpusDocument("a", "self-written", "The cat sat on the mat. 1, 2, 3, 4, 5."),
            nr.CorpusDocument("b", "self-written", "def f(x):\n    return x * 2\n"))
    return docs, nr.build_corpus_index(lm, 2, docs)


def test_corpus_index_keeps_each_neurons_true_extremes(lm, small_index):
    docs, index = small_index
    per_doc = [trace(lm, token_ids(lm, d.text), record={"product", "gate", "up"}, layers=[2]) for d in docs]
    product = np.concatenate([tp.at("product", 2) for tp in per_doc])
    assert index.complete and index.token_count == product.shape[0]
    k = index.high.values.shape[1]
    for neuron in (0, 7, 800, 1535):
        np.testing.assert_array_equal(index.high.values[neuron], np.sort(product[:, neuron])[::-1][:k])
        np.testing.assert_array_equal(index.low.values[neuron], np.sort(product[:, neuron])[:k])
        for j in range(k):   # every kept example points at the token that produced its value
            d, p = index.high.doc[neuron, j], index.high.pos[neuron, j]
            assert per_doc[d].at("product", 2)[p, neuron] == index.high.values[neuron, j]
            assert per_doc[d].at("gate", 2)[p, neuron] == index.high.gate[neuron, j]
    np.testing.assert_allclose(index.mean, product.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(index.positive_share, (product > 0).mean(0))


def test_neuron_examples_show_the_token_in_its_context(lm, small_index):
    docs, index = small_index
    examples = nr.neuron_examples(index, 800, k=3, before=4, after=2)
    assert [e.value for e in examples] == index.high.values[800, :3].tolist()
    for e in examples:
        text = docs[index.titles.index(e.document)].text
        assert e.before + e.token + e.after in text
        assert e.token == decode_each(lm, [token_ids(lm, text)[e.position]])[0]
    low = nr.neuron_examples(index, 800, k=2, negative=True)
    assert low[0].value == index.low.values[800, 0] <= low[1].value


def test_building_stops_between_documents_when_asked(lm):
    docs = nr.load_corpus()[:3]
    seen = []
    index = nr.build_corpus_index(lm, 0, docs, on_document=lambda d, n, title: seen.append((d, n, title)),
                                  should_stop=lambda: len(seen) >= 2)
    assert seen == [(0, 3, docs[0].title), (1, 3, docs[1].title)]
    assert index.documents_read == 2 and not index.complete


def test_prose_figures_match_the_model(lm):
    """concepts/feed-forward.md states these numbers; they are the live model's."""
    prose = (ROOT / "concepts" / "feed-forward.md").read_text().replace("{,}", ",")   # LaTeX thousands
    split = nr.parameter_split(lm)
    cfg = lm.model.config
    assert f"{split.ffn:,}" in prose and f"{split.attention:,}" in prose
    assert f"{cfg.intermediate_size:,}" in prose and f"d = {cfg.hidden_size}" in prose
    assert cfg.intermediate_size * 3 == cfg.hidden_size * 8        # 1536 = 8/3 x 576
    assert round(split.ffn_share_of_layer, 2) == 0.75                # "three quarters of every block"
    silu = lambda z: z / (1 + np.exp(-z))                            # noqa: E731, the worked example
    assert round(silu(2.0), 3) == 1.762 and round(silu(2.0) * -1.5, 2) == -2.64
    assert round(silu(-3.0), 3) == -0.142 and round(silu(-3.0) * 4.0, 2) == -0.57
    assert round(silu(-4.0) * 10, 2) == -0.72
    assert re.search(r"under 2,000 tokens", prose)
    assert sum(len(token_ids(lm, d.text)) for d in nr.load_corpus()) < 2000
    tomllib.loads(prose.split("+++")[1])   # the front matter parses


def test_charts_mark_the_chosen_neuron_and_keep_the_numbers():
    values = np.linspace(-1, 1, 40)
    fig = neuron_values(values, [3, 5], 7, "product")
    colours = list(fig.data[0].marker.color)
    assert colours[7] == CHOSEN and colours[3] == colours[5] == RANKED and colours[0] == NEURON
    assert list(fig.data[0].x) == list(range(1, 41)) and fig.layout.annotations[0].text == "neuron 8"
    bars = ablation_bars(["a", "a"], [0.5, 0.2], [0.4, 0.3], [0.5, 0.2], "one silenced", "one random")
    assert [t.name for t in bars.data] == ["intact model", "one silenced", "one random"]
    assert list(bars.data[1].x) == [40.0, 30.0] and len(set(bars.data[0].y)) == 2   # equal labels stay apart
    parts = parameter_bars([("self_attn.q_proj", 30), ("mlp.up_proj", 60), ("input_layernorm", 10)])
    assert [t.x[0] for t in parts.data] == [30, 60, 10] and parts.layout.xaxis.range == (0, 100)
