"""The sentence-embeddings page: its matrices are the models' own cosines, recomputed here without the app."""
import json

import numpy as np
import pytest
import torch

from engine.model.encoder import load_encoder
from engine.inside.sentence_embeddings import POOLINGS, parse_triples, run_benchmark, split_preset
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from ui import samples

SETS = samples.load("sentence_sets")


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def chart(at, key):
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def matrix(at, key):
    z = chart(at, key)["data"][0]["z"]
    return plotly_array(z) if isinstance(z, dict) else np.array(z, dtype=float)


def metric(at, label):
    return next(m.value for m in at.metric if m.label.startswith(label))


def cosines(vectors):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def minilm(encoder, sentences):
    """Mean pooling over MiniLM's last layer, as its model card prescribes, one sentence at a time."""
    rows = []
    for s in sentences:
        batch = encoder.tokenizer(s, return_tensors="pt")
        with torch.inference_mode():
            rows.append(encoder.model(**batch).last_hidden_state[0].mean(0).double().numpy())
    return np.stack(rows)


def smollm2(lm, sentences, layer, pooling):
    rows = []
    for s in sentences:
        ids = lm.tokenizer(s, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            h = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0].double().numpy()
        rows.append({"mean": h.mean(0), "last": h[-1], "mean_skip_first": h[1:].mean(0)}[pooling])
    return np.stack(rows)


def check_matrices(at, lm, encoder, sentences, layer, pooling):
    for key, expected in (("minilm", cosines(minilm(encoder, sentences))),
                          ("smollm2", cosines(smollm2(lm, sentences, layer, pooling)))):
        shown = matrix(at, key)
        assert np.array_equal(shown, shown.T), key                     # symmetric
        np.testing.assert_allclose(np.diag(shown), 1.0, atol=1e-9)     # unit diagonal
        np.testing.assert_allclose(shown, expected, atol=2e-4)
    return matrix(at, "minilm"), matrix(at, "smollm2")


def test_defaults_minilm_ranks_the_paraphrase_first(lm, encoder):
    at = open_page("sentence-embeddings")
    assert_no_exception(at)
    text, marked = split_preset(SETS["Paraphrase vs shared words"])
    sentences = text.splitlines()
    assert marked == 2 and at.selectbox(key="para").value == "2" and at.slider(key="layer").value == lm.card.layers
    enc, dec = check_matrices(at, lm, encoder, sentences, lm.card.layers, "mean")
    assert int(np.argmax(enc[0, 1:])) + 1 == 1                         # MiniLM: line 2, the paraphrase, first
    assert metric(at, "MiniLM: the paraphrase ranks") == "1st of 4"
    dec_rank = 1 + sorted(range(1, 5), key=lambda i: -dec[0, i]).index(1)
    assert metric(at, "SmolLM2: the paraphrase ranks").startswith(["1st", "2nd", "3rd", "4th"][dec_rank - 1])
    assert metric(at, "SmolLM2: mean cosine") == f"{(dec.sum() - 5) / 20:.2f}"
    assert "MiniLM ranks the paraphrase first" in shown_text(at)

    run_until(at, lambda a: any(m.label.startswith("Test: MiniLM") for m in a.metric))   # the benchmark job
    assert_no_exception(at)
    bench = run_benchmark(lm, encoder, parse_triples(next(iter(samples.load("sentence_benchmarks").values()))),
                          triples_per_pass=12)
    assert metric(at, "Test: MiniLM") == f"{int(bench.encoder_wins.sum())} of 12"
    wins = {p: bench.decoder_wins[p].sum(axis=1) for p in POOLINGS}
    assert metric(at, "Test: SmolLM2, your layer") == f"{wins['mean'][lm.card.layers]} of 12"
    lines = chart(at, "benchmark")["data"]
    assert plotly_array(lines[0]["y"]).tolist() == wins["mean"].tolist()


def test_share_link_layer_pooling_and_paraphrase(lm, encoder):
    text, _ = split_preset(SETS["Questions a search box gets"])
    at = open_page("sentence-embeddings", {"set": "Questions a search box gets", "sentences": text, "para": "2",
                                           "layer": "15", "pool": "last token"})
    assert_no_exception(at)
    assert at.slider(key="layer").value == 15 and at.radio(key="pool").value == "last token"
    enc, _ = check_matrices(at, lm, encoder, text.splitlines(), 15, "last")
    assert int(np.argmax(enc[0, 1:])) == 0 and metric(at, "MiniLM: the paraphrase ranks") == "1st of 4"


def test_a_set_without_paraphrase_names_the_closest_line(lm, encoder):
    text, _ = split_preset(SETS["Unrelated topics"])
    at = open_page("sentence-embeddings", {"set": "Unrelated topics", "sentences": text, "para": "none",
                                           "pool": "mean without the first token", "layer": "3"})
    assert_no_exception(at)
    enc, _ = check_matrices(at, lm, encoder, text.splitlines(), 3, "mean_skip_first")
    assert metric(at, "MiniLM: closest to the query") == f"line {int(np.argmax(enc[0, 1:])) + 2}"


@pytest.mark.parametrize("params, hint", [({"sentences": ""}, "Type two or more sentences"),
                                          ({"sentences": "only one line"}, "Add at least a second line"),
                                          ({"sentences": "a\nb", "para": "5", "layer": "99", "pool": "x"}, None),
                                          ({"sentences": "🍓\n<b>x</b> $y$\n:red[z]"}, None)])
def test_odd_links_fall_back(lm, params, hint):
    at = open_page("sentence-embeddings", params)
    assert_no_exception(at)
    if hint:
        assert hint in shown_text(at)
    else:
        assert at.get("plotly_chart")
