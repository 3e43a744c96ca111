"""engine.inside.positions: the sinusoids follow their formula, SmolLM2 has no position parameters, shifting every
position leaves RoPE's scores unchanged, and a shuffle moves the prediction except in the order-blind setting."""
import math

import numpy as np
import pytest

from engine.inside.positions import (largest_shift_change, order_effect, position_facts, shift_check, shifted_scores,
                              shuffle_words, sinusoidal_encoding, word_spans)
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids, tokenize
from engine.model.traced import Interventions

TEXT = "Every morning the old baker unlocked his shop at six, lit the ovens and set out the first warm loaves of"


def test_sinusoids_follow_the_formula():
    table = sinusoidal_encoding(50, 16)
    for pos in (0, 1, 17, 49):
        for i in range(8):
            angle = pos / 10_000 ** (2 * i / 16)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-12)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-12)
    # positional-encoding.md's worked example: d = 4, pos = 1
    np.testing.assert_allclose(sinusoidal_encoding(2, 4)[1], [0.841, 0.540, 0.010, 1.000], atol=5e-4)
    assert sinusoidal_encoding(3, 8, base=100.0)[2, 2] == pytest.approx(math.sin(2 / 100 ** (2 / 8)))
    with pytest.raises(ValueError):
        sinusoidal_encoding(10, 7)
    with pytest.raises(ValueError):
        sinusoidal_encoding(0, 8)


def test_dot_product_of_two_encodings_depends_only_on_their_offset():
    table = sinusoidal_encoding(300, 64)
    offsets = np.arange(100)
    expected = np.cos(offsets[:, None] / 10_000 ** (np.arange(0, 64, 2) / 64)[None]).sum(1)
    for p in (0, 40, 150):
        np.testing.assert_allclose(table[p + offsets] @ table[p], expected, atol=1e-9)


def test_an_absolute_encoding_moves_when_positions_shift():
    assert largest_shift_change(576, 30, 0) == 0.0
    moved = largest_shift_change(576, 30, 100)
    table = sinusoidal_encoding(130, 576)
    assert moved == pytest.approx(np.abs(table[100:] - table[:30]).max())
    assert 1.0 < moved <= 2.0


def test_smollm2_has_no_position_parameters(lm):
    f = position_facts(lm)
    assert f.position_parameters == 0 and f.position_parameter_names == ()
    params = dict(lm.model.named_parameters())
    assert {".".join(n.split(".")[:2]) for n in params} <= {"model.embed_tokens", "model.layers", "model.norm",
                                                           "lm_head"}
    assert not any(8_192 in p.shape for p in params.values())
    assert f.token_table == (49_152, 576) and f.d_model == 576 and f.layers == 30
    assert f.rope_theta == 100_000 and f.rope_type == "default" and f.inv_freq.size == 32
    assert "rotary_emb.inv_freq" in f.rotary_buffers
    assert f.learned_table_parameters == 8_192 * 576
    assert 0.03 < f.learned_table_parameters / f.parameters < 0.04


def test_word_spans_keep_punctuation_with_its_word():
    pieces = ["Every", "Ġmorning", "Ġthe", "Ġbaker", ",", "Ġlit", "Ċ", "Ġovens"]
    assert word_spans(pieces) == [(0, 1), (1, 2), (2, 3), (3, 5), (5, 6), (6, 7), (7, 8)]


def test_shuffle_moves_only_the_middle_words(lm):
    tokens = tokenize(lm, TEXT)
    ids, pieces = [t.id for t in tokens], [t.piece for t in tokens]
    shuffled = shuffle_words(ids, pieces, seed=0)
    assert shuffled is not None and list(shuffled) != ids
    assert sorted(shuffled) == sorted(ids)                                     # exactly the same tokens
    spans = word_spans(pieces)
    first, last = spans[0], spans[-1]
    assert list(shuffled[:first[1]]) == ids[:first[1]] and list(shuffled[last[0]:]) == ids[last[0]:]
    assert shuffle_words(ids, pieces, seed=0) == shuffled                      # seeded
    assert shuffle_words(ids, pieces, seed=1) != shuffled
    three = tokenize(lm, "One two three")
    assert shuffle_words([t.id for t in three], [t.piece for t in three], 0) is None   # one middle word
    same = tokenize(lm, "a b b b c")
    assert shuffle_words([t.id for t in same], [t.piece for t in same], 0) is None    # middle words all alike


def test_shuffling_moves_the_prediction_unless_the_model_is_order_blind(lm):
    tokens = tokenize(lm, TEXT)
    ids = [t.id for t in tokens]
    shuffled = list(shuffle_words(ids, [t.piece for t in tokens], seed=0))
    real = order_effect(lm, ids, shuffled, "real", Interventions())
    masked = order_effect(lm, ids, shuffled, "no rope", Interventions(rope=False))
    blind = order_effect(lm, ids, shuffled, "blind", Interventions(rope=False, causal_mask=False))
    assert blind.total_variation < 1e-4 and blind.kl_nats < 1e-6            # permutation-invariant: float rounding
    assert blind.original_top[0][0] == blind.shuffled_top[0][0]
    assert masked.total_variation > 100 * blind.total_variation               # the causal mask leaks order
    assert real.total_variation > masked.total_variation
    assert 0 <= real.total_variation <= 1 and len(real.original_top) == 5
    assert real.original_top[0][1] >= real.original_top[1][1]
    assert real.original_perplexity == perplexity(lm, ids).perplexity                      # the same pass, exactly
    assert masked.original_perplexity == perplexity(lm, ids, Interventions(rope=False)).perplexity


def test_shifting_every_position_leaves_the_scores(lm):
    ids = token_ids(lm, TEXT)
    base = shifted_scores(lm, ids, 0)
    assert shift_check(base, shifted_scores(lm, ids, 0)).max_score_difference == 0.0
    check = shift_check(base, shifted_scores(lm, ids, 50))
    assert check.shift == 50
    assert check.max_score_difference <= 1e-4 and check.max_logit_difference <= 1e-3
    assert check.first_layer_difference <= check.max_score_difference
    assert check.largest_score > 1.0
    far = shift_check(base, shifted_scores(lm, ids, 8_000))
    assert far.max_score_difference > check.max_score_difference              # float32 angles: rounding grows
    with pytest.raises(ValueError):
        shift_check(base, shifted_scores(lm, ids[:-1], 5))


def test_prose_facts_about_the_model_match_it(lm):
    """The concept files state a few facts about SmolLM2 in words; each is checked against the live model."""
    from concepts.catalogue import HERE
    cfg = lm.model.config
    rope_md = (HERE / "rope.md").read_text()
    positional_md = (HERE / "positional-encoding.md").read_text()
    theta, context = cfg.rope_parameters["rope_theta"], cfg.max_position_embeddings
    assert f"{theta:,.0f}" == "100,000" and "100,000" in rope_md and "100000^{-2i/64}" in positional_md
    assert f"{context:,}" == "8,192" and "8,192-token context" in rope_md
    assert cfg.head_dim == 64 and cfg.head_dim // 2 == 32 and "split into 32 pairs" in rope_md
    assert cfg.num_hidden_layers == 30 and "all 30 layers" in positional_md
