"""engine.inside.rope and the RoPE interventions of the traced pass: the frequencies are the model's, the rotation
reproduces the model's rotated q and k, scores depend on distance only, and a changed base or scale does what
it says (and the model's own base changes nothing, bit for bit)."""
import math

import numpy as np
import pytest

from engine.inside.rope import as_pairs, pair_contributions, rope_frequencies, rotate_pairs, rotation_tables, score_by_distance
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

TEXT = "The old lighthouse keeper climbed the narrow stairs every evening to light the lamp for the ships."
LAYER, HEAD = 1, 2


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


@pytest.fixture(scope="module")
def tp(lm, ids):
    return trace(lm, ids, record={"q", "k", "q_rot", "k_rot", "scores"}, layers=[LAYER])


def formula_inv_freq(lm) -> np.ndarray:
    """theta^(-2i/d) with theta and d taken from the config, not from the rotary module."""
    cfg = lm.model.config
    theta = cfg.rope_parameters["rope_theta"]
    d = cfg.head_dim
    return theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)


def test_frequencies_are_the_models(lm):
    f = rope_frequencies(lm)
    assert f.theta == lm.model.config.rope_parameters["rope_theta"] == 100_000
    assert f.pairs == 32 and f.head_dim == 64 and f.rope_type == "default" and f.attention_scaling == 1.0
    np.testing.assert_array_equal(f.inv_freq, lm.model.model.rotary_emb.inv_freq.numpy().astype(np.float64))
    np.testing.assert_allclose(f.inv_freq, formula_inv_freq(lm), rtol=1e-6)
    assert f.formula_gap < 1e-6
    assert f.wavelengths[0] == pytest.approx(2 * math.pi)
    assert f.wavelengths[-1] == pytest.approx(2 * math.pi * 100_000 ** (62 / 64), rel=1e-6)   # rope.md: ~438,000
    assert round(f.wavelengths[-1], -3) == 438_000
    assert not f.inv_freq.flags.writeable


@pytest.mark.parametrize("start", [0, 500])
def test_rotation_tables_equal_the_formula(lm, start):
    cos, sin = rotation_tables(lm, 40, start)
    angles = np.arange(start, start + 40, dtype=np.float64)[:, None] * formula_inv_freq(lm)[None]
    assert cos.shape == sin.shape == (40, 32)
    np.testing.assert_allclose(cos, np.cos(angles), atol=2e-6 if start == 0 else 1e-4)
    np.testing.assert_allclose(sin, np.sin(angles), atol=2e-6 if start == 0 else 1e-4)


def test_rotation_reproduces_the_models_rotated_q_and_k(lm, tp):
    f = rope_frequencies(lm)
    q, q_rot = tp.at("q", LAYER)[HEAD], tp.at("q_rot", LAYER)[HEAD]
    k, k_rot = tp.at("k", LAYER)[0], tp.at("k_rot", LAYER)[0]
    for m in (0, 1, 7, len(q) - 1):
        np.testing.assert_allclose(rotate_pairs(as_pairs(q[m]), m * f.inv_freq), as_pairs(q_rot[m]), atol=1e-4)
        np.testing.assert_allclose(rotate_pairs(as_pairs(k[m]), m * f.inv_freq), as_pairs(k_rot[m]), atol=1e-4)
    np.testing.assert_array_equal(as_pairs(q[0])[:, 0], q[0][:32])       # rotate-half: pair i = (i, i + 32)
    np.testing.assert_array_equal(as_pairs(q[0])[:, 1], q[0][32:])
    np.testing.assert_array_equal(q_rot[0], q[0])                          # position 0: no rotation


def test_pair_contributions_sum_to_the_models_score(tp):
    q_rot, k_rot = tp.at("q_rot", LAYER)[HEAD], tp.at("k_rot", LAYER)[0]
    scores = tp.at("scores", LAYER)[HEAD]
    m, n = len(q_rot) - 1, 3
    parts = pair_contributions(q_rot[m], k_rot[n])
    assert parts.shape == (32,)
    assert parts.sum() == pytest.approx(float(scores[m, n]) * 8, abs=1e-3)    # scores carry the 1/sqrt(64)


def test_score_depends_on_distance_only(lm, tp):
    f = rope_frequencies(lm)
    q, k = tp.at("q", LAYER)[HEAD], tp.at("k", LAYER)[0]
    m, n = len(q) - 1, 4
    curve = score_by_distance(q[m], k[n], f.inv_freq, np.arange(60))
    assert curve[m - n] == pytest.approx(float(tp.at("scores", LAYER)[HEAD, m, n]) * 8, abs=1e-3)
    assert curve[0] == pytest.approx(float(q[m].astype(np.float64) @ k[n]), rel=1e-9)    # no distance, no turn
    for start in (0, 37, 5_000):       # the same distance anywhere gives the same score (float64)
        turned_q = rotate_pairs(as_pairs(q[m].astype(np.float64)), (start + 9) * f.inv_freq)
        turned_k = rotate_pairs(as_pairs(k[n].astype(np.float64)), start * f.inv_freq)
        assert (turned_q * turned_k).sum() == pytest.approx(curve[9], rel=1e-9, abs=1e-9)


def test_the_models_own_base_changes_nothing_bit_for_bit(lm, ids):
    plain = trace(lm, ids, record={"q_rot"}, layers=[0])
    same = trace(lm, ids, record={"q_rot"}, layers=[0], interventions=Interventions(rope_theta=100_000.0))
    np.testing.assert_array_equal(plain.logits, same.logits)
    np.testing.assert_array_equal(plain["q_rot"], same["q_rot"])
    unscaled = trace(lm, ids, interventions=Interventions(position_scale=1.0))
    np.testing.assert_array_equal(plain.logits, unscaled.logits)


def test_another_base_and_scaled_positions_turn_by_their_own_angles(lm, ids):
    d = 64
    for iv, angle_of in [(Interventions(rope_theta=10_000.0), lambda m: m * 10_000.0 ** (-np.arange(0, d, 2) / d)),
                         (Interventions(position_scale=0.5), lambda m: 0.5 * m * formula_inv_freq(lm))]:
        tp = trace(lm, ids, record={"q", "q_rot"}, layers=[0], interventions=iv)
        q, q_rot = tp.at("q", 0)[HEAD], tp.at("q_rot", 0)[HEAD]
        for m in (1, 5, len(ids) - 1):
            np.testing.assert_allclose(rotate_pairs(as_pairs(q[m].astype(np.float64)), angle_of(m)),
                                       as_pairs(q_rot[m]), atol=1e-4)
        assert np.abs(tp.logits - trace(lm, ids).logits).max() > 1e-2


@pytest.mark.parametrize("bad", [dict(rope_theta=0), dict(rope_theta=1), dict(rope_theta=-5.0),
                                 dict(rope_theta=float("nan")), dict(rope_theta=float("inf")), dict(rope_theta="1e4"),
                                 dict(position_scale=0), dict(position_scale=-1.0), dict(position_scale=float("nan"))])
def test_bad_rope_interventions_are_refused(lm, ids, bad):
    with pytest.raises(ValueError):
        trace(lm, ids[:3], interventions=Interventions(**bad))
