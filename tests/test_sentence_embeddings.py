"""Pooled sentence vectors from MiniLM and SmolLM2, cosine matrices, ranks and the paraphrase benchmark."""
import numpy as np
import pytest
import torch

from charts.sentence_embeddings import benchmark_by_layer, query_bars, sentence_map, similarity_heatmap
from engine.model.encoder import load_encoder
from engine.inside.sentence_embeddings import (MAX_SENTENCE_CHARS, MAX_SENTENCES, POOLINGS, cosine_matrix, decoder_states,
                                        encoder_vectors, mean_off_diagonal, parse_sentences, parse_triples,
                                        rank_by_similarity, rank_of, run_benchmark, split_preset)
from ui import samples


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_sentences_are_one_per_line_and_bounded():
    parsed = parse_sentences("  a  b \n\n c\n" + "\n".join(f"s{i}" for i in range(20)))
    assert parsed.items[:2] == ("a b", "c") and len(parsed.items) == MAX_SENTENCES and parsed.notes
    assert len(parse_sentences("x" * 999).items[0]) == MAX_SENTENCE_CHARS
    assert parse_sentences("").items == ()


def test_presets_mark_their_paraphrase_and_the_benchmark_parses():
    text, marked = split_preset("q\n≈ p\nd")
    assert text == "q\np\nd" and marked == 2
    assert split_preset("a\nb")[1] is None
    for name, preset in samples.load("sentence_sets").items():
        assert len(parse_sentences(split_preset(preset)[0]).items) >= 4, name
    triples = parse_triples(next(iter(samples.load("sentence_benchmarks").values())))
    assert len(triples) == 12 and all(len(set(t)) == 3 for t in triples)
    assert parse_triples("a | b\nx | y | z") == (("x", "y", "z"),)


def test_cosine_matrix_is_symmetric_with_a_unit_diagonal_and_ranks_follow_it():
    rng = np.random.default_rng(0)
    sims = cosine_matrix(rng.normal(size=(5, 7)))
    assert np.array_equal(sims, sims.T) and np.allclose(np.diag(sims), 1.0)
    row = sims[0, 1:]
    assert rank_by_similarity(sims)[0] == 1 + int(np.argmax(row))
    assert rank_of(sims, rank_by_similarity(sims)[-1]) == 4
    same = cosine_matrix(np.ones((3, 4)))
    assert mean_off_diagonal(same) == pytest.approx(1.0)


def test_batched_padded_states_equal_each_sentence_alone(lm):
    sentences = ["A cat sleeps.", "The children are building a sandcastle on the beach today."]
    states = decoder_states(lm, sentences)
    assert states.layers == lm.card.layers and states.token_counts[0] < states.token_counts[1]
    for i, sentence in enumerate(sentences):
        ids = lm.tokenizer(sentence, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            hidden = torch.stack(lm.model(input_ids=ids, output_hidden_states=True).hidden_states)[:, 0].double()
        np.testing.assert_allclose(states.vectors(12, "mean")[i], hidden[12].mean(0).numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(states.vectors(30, "last")[i], hidden[30, -1].numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(states.vectors(5, "mean_skip_first")[i], hidden[5, 1:].mean(0).numpy(),
                                   rtol=1e-4, atol=1e-4)


def test_minilm_vectors_are_unit_length_and_384_wide(encoder):
    vectors = encoder_vectors(encoder, ["one sentence", "another one"])
    assert vectors.shape == (2, encoder.model.config.hidden_size) == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_benchmark_measures_minilm_ahead_of_every_smollm2_layer(lm, encoder):
    triples = parse_triples(next(iter(samples.load("sentence_benchmarks").values())))
    bench = run_benchmark(lm, encoder, triples)
    best_decoder = max(int(bench.decoder_wins[p].sum(axis=1).max()) for p in POOLINGS)
    assert int(bench.encoder_wins.sum()) > best_decoder
    assert bench.encoder_spread < 0.3 < float(bench.decoder_spread["mean"][15])   # decoder states all look alike
    assert bench.decoder_margin["mean"].shape == (lm.card.layers + 1, len(triples))
    whole = run_benchmark(lm, encoder, triples, triples_per_pass=len(triples))     # batching changes nothing
    np.testing.assert_allclose(whole.decoder_margin["last"], bench.decoder_margin["last"], atol=1e-4)
    calls = []
    part = run_benchmark(lm, encoder, triples[:6], progress=lambda f, m: calls.append(f),
                         should_stop=lambda: len(calls) >= 1)                          # a stop after one pass
    assert part.size == 3 and calls[-1] == 1.0


def test_charts_carry_their_numbers():
    sims = np.array([[1.0, 0.5], [0.5, 1.0]])
    heat = similarity_heatmap(sims, ["1", "2"], ["a", "b"])
    assert heat.data[0].z.tolist() == sims.tolist() and heat.data[0].zmin == 0 and heat.data[0].zmax == 1
    bars = query_bars(["2"], [0.4], [0.9], "MiniLM", "SmolLM2")
    assert list(bars.data[0].x) == [0.4] and list(bars.data[1].x) == [0.9]
    assert len(sentence_map(np.zeros((2, 2)), ["1", "2"], ["query", "other"], ["a", "b"], 0.5).data) == 2
    fig = benchmark_by_layer([0, 1], {"mean": [1, 2]}, {"mean": "mean"}, 3, 3, 1, "mean")
    assert list(fig.data[0].y) == [1, 2] and list(fig.data[-1].y) == [2]


def test_the_prose_claim_about_the_first_position_holds_on_the_live_model(lm):
    """sentence-embeddings.md: in the middle layers the first position's state dwarfs the others, so a plain
    mean makes every sentence look alike, and leaving that token out undoes it."""
    sentences = ["A man is playing the guitar on stage.", "The bank raised its interest rates again."]
    ids = lm.tokenizer(sentences[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        norms = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[15][0].norm(dim=-1)
    assert norms[0] > 20 * norms[1:].median()
    states = decoder_states(lm, sentences)
    assert cosine_matrix(states.vectors(15, "mean"))[0, 1] > 0.99
    assert cosine_matrix(states.vectors(15, "mean_skip_first"))[0, 1] < 0.95
