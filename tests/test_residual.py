"""The residual stream engine on the live model: the stream is a sum, the lens after the last block is the model,
the lens after block L is the early exit at L, and the attribution adds up to the model's logit."""
import numpy as np
import pytest

from engine.model.forward import forward
from engine.inside.residual import (attribution, exit_perplexity, exit_sweep, lens_grid_pass, softmax, stream_pass,
                             stream_sizes, trajectory)
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

TEXT = "The Eiffel Tower is in Paris, and the Colosseum is in"


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


@pytest.fixture(scope="module")
def tp(lm, ids):
    return stream_pass(lm, ids)


def test_lens_after_the_last_block_is_the_models_prediction(lm, ids, tp):
    own = softmax(forward(lm, ids).logits[-1])
    lens = softmax(tp.lens.last_logits[-1])
    assert int(np.argmax(lens)) == int(np.argmax(own))
    np.testing.assert_allclose(lens, own, atol=1e-5)


def test_lens_after_block_l_is_the_early_exit(lm, ids, tp):
    for exit_after in (3, 17):
        early = trace(lm, ids, interventions=Interventions(exit_layer=exit_after)).logits[-1]
        np.testing.assert_allclose(tp.lens.last_logits[exit_after - 1], early, atol=2e-3, rtol=1e-4)


def test_trajectory_reads_probability_and_rank(tp):
    target = int(np.argmax(tp.logits[-1]))
    path = trajectory(tp, target)
    assert path.rank[-1] == 1 and path.top_ids[-1] == target
    probs = softmax(tp.lens.last_logits[10])
    assert path.probability[10] == pytest.approx(probs[target])
    assert path.rank[10] == 1 + int((probs > probs[target]).sum())


def test_stream_sizes_and_the_sum(lm, ids, tp):
    p = len(ids) - 1
    sizes = stream_sizes(tp, p)
    embedding = lm.model.model.embed_tokens.weight[ids[p]].numpy()
    assert sizes.embedding_rms == pytest.approx(np.sqrt((embedding ** 2).mean()), rel=1e-4)
    rebuilt = embedding + tp["attn_out"][:, p].sum(0) + tp["down"][:, p].sum(0)
    np.testing.assert_allclose(rebuilt, tp["resid_out"][-1, p], atol=1e-3 * np.abs(rebuilt).max())
    assert sizes.stream_rms[-2] > 5 * sizes.embedding_rms


def test_attribution_adds_up_to_the_models_logit(lm, tp):
    logits = tp.logits[-1]
    first, second = (int(i) for i in np.argsort(-logits)[:2])
    single = attribution(lm, tp, first)
    assert single.total == pytest.approx(single.model_value, abs=1e-3)
    assert single.model_value == pytest.approx(float(logits[first]), abs=1e-6)
    diff = attribution(lm, tp, first, second)
    assert diff.total == pytest.approx(float(logits[first] - logits[second]), abs=1e-3)
    assert diff.heads.shape == (30, 9)


def test_head_shares_sum_to_the_attention_write(lm, tp):
    """Per-head shares (each head's 64 columns of W_O) add up to the attention write read the same way."""
    token = int(np.argmax(tp.logits[-1]))
    single = attribution(lm, tp, token)
    p = len(tp.ids) - 1
    read = (lm.model.lm_head.weight[token] * lm.model.model.norm.weight / single.scale).double().numpy()
    direct = tp["attn_out"][:, p].astype(np.float64) @ read
    np.testing.assert_allclose(single.attention, direct, atol=1e-4)


def test_exit_sweep_matches_single_exits(lm, ids):
    sweep = exit_sweep(lm, ids[:6])
    assert sweep.complete and sweep.exit_layers == tuple(range(31))
    assert sweep.perplexities[-1] == pytest.approx(exit_perplexity(lm, ids[:6], 30).perplexity)
    assert sweep.perplexities[12] == pytest.approx(exit_perplexity(lm, ids[:6], 12).perplexity)
    stopped = exit_sweep(lm, ids[:6], should_stop=lambda: True)
    assert not stopped.complete and stopped.exit_layers == ()


def test_lens_grid_last_row_is_the_models_argmax(lm, ids):
    lens = lens_grid_pass(lm, ids).lens
    own = forward(lm, ids).logits
    np.testing.assert_array_equal(lens.top_ids[-1, :, 0], own.argmax(-1))
