"""RMSNorm measured on the live model: the by-hand norm equals the model's, sizes are what they claim, gains are
the model's own, and the unit-gain intervention changes what it should."""
import numpy as np
import pytest
import torch

from engine.inside.norms import MASSIVE_RATIO, gains, massive_activations, norm_profile, normalize_by_hand, rms
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

TEXT = "The Eiffel Tower was finished in 1889 for the World's Fair in Paris."


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


@pytest.fixture(scope="module")
def prof(lm, ids):
    return norm_profile(lm, ids)


def test_rms_is_root_mean_square():
    assert rms(np.array([2.0, -1.0, 0.0, 3.0])) == pytest.approx(np.sqrt(3.5))
    assert np.allclose(rms(np.ones((3, 4)) * 2), 2.0)


def test_by_hand_equals_the_models_norm_everywhere(lm, prof):
    attention, _, _ = gains(lm)
    worst = max(normalize_by_hand(prof, attention, l, p).max_abs_difference
                for l in range(prof.layers) for p in range(prof.length))
    assert worst < 1e-5


def test_by_hand_equals_the_models_own_rmsnorm_module(lm, prof):
    """Independent of the traced pass: the model's own input_layernorm module on the same vector."""
    attention, _, _ = gains(lm)
    hand = normalize_by_hand(prof, attention, 7, 3)
    with torch.inference_mode():
        own = lm.model.model.layers[7].input_layernorm(torch.from_numpy(prof.resid_in[7, 3].copy())).numpy()
    np.testing.assert_allclose(hand.rms_norm, own, atol=1e-5)
    assert hand.eps == lm.model.config.rms_norm_eps


def test_layer_norm_contrast_is_layernorm(lm, prof):
    attention, _, _ = gains(lm)
    hand = normalize_by_hand(prof, attention, 10, 2)
    ln = torch.nn.functional.layer_norm(torch.from_numpy(hand.x.copy()), (hand.x.size,), weight=torch.from_numpy(hand.gain.copy()),
                                        eps=hand.eps).numpy()
    np.testing.assert_allclose(hand.layer_norm, ln, atol=1e-6)
    assert hand.mean_square == pytest.approx(hand.mean ** 2 + hand.variance)   # RMS^2 = mean^2 + variance
    assert hand.mean != 0 and hand.ln_vs_rms_cosine < 1.0   # a real stream vector is not centred


def test_profile_sizes_match_a_fresh_trace(lm, ids, prof):
    tp = trace(lm, ids, record={"resid_in", "ffn_norm_out"}, layers=[0, 29])
    np.testing.assert_allclose(prof.rms_in_attn[[0, 29]], rms(tp["resid_in"]), rtol=1e-6)
    np.testing.assert_allclose(prof.rms_out_ffn[[0, 29]], rms(tp["ffn_norm_out"]), rtol=1e-6)
    assert prof.rms_in_attn.shape == (30, len(ids))
    # the stream grows through the blocks; the norms' outputs stay small
    assert np.all(prof.rms_in_attn[-1] > 10 * prof.rms_in_attn[0])
    assert prof.rms_out_attn.max() < prof.rms_in_attn[-1].min()


def test_massive_activations_are_what_they_say(prof):
    found = massive_activations(prof)
    assert found, "SmolLM2 shows massive activations on this text"
    assert all(m.ratio >= MASSIVE_RATIO for m in found)
    assert [m.ratio for m in found] == sorted((m.ratio for m in found), reverse=True)
    m = found[0]
    x = prof.resid_in[m.layer, m.position]
    assert int(np.argmax(np.abs(x))) == m.channel
    assert m.ratio == pytest.approx(np.abs(x).max() / np.median(np.abs(x)), rel=1e-5)


def test_gains_are_copies_of_the_models(lm):
    attention, ffn, final = gains(lm)
    np.testing.assert_array_equal(attention[3], lm.model.model.layers[3].input_layernorm.weight.numpy())
    np.testing.assert_array_equal(ffn[3], lm.model.model.layers[3].post_attention_layernorm.weight.numpy())
    np.testing.assert_array_equal(final, lm.model.model.norm.weight.numpy())
    assert not attention.flags.writeable


def test_unit_gain_changes_the_norm_output_and_costs_perplexity(lm, ids):
    plain = trace(lm, ids, record={"attn_norm_out"}, layers=[5])
    unit = trace(lm, ids, record={"attn_norm_out", "resid_in"}, layers=[5],
                 interventions=Interventions(unit_norm_gain=frozenset({"attention"})))
    x = unit.at("resid_in", 5)
    np.testing.assert_allclose(unit.at("attn_norm_out", 5), x / np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-5),
                               atol=1e-5)
    assert not np.allclose(plain.at("attn_norm_out", 5), unit.at("attn_norm_out", 5))
    assert perplexity(lm, ids, Interventions(unit_norm_gain=frozenset({"final"}))).perplexity > \
        2 * perplexity(lm, ids).perplexity


def test_sixty_one_norms(lm):
    """concepts/layer-norm.md: 61 norms for 30 blocks."""
    names = [n for n, _ in lm.model.named_parameters() if "norm" in n]
    assert len(names) == 2 * lm.model.config.num_hidden_layers + 1 == 61
