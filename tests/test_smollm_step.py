"""Real gradients on SmolLM2: the private last block reproduces the model's own loss, a small step lowers it,
the two gradient paths agree, and the shared model is never changed."""
import numpy as np
import pytest
import torch

from engine.decoding.loss import model_own_loss, token_losses
from engine.tokens.offsets import token_ids
from engine.training.smollm_step import LastBlock, gradient_steps, layer_gradients, loss_slice, top_input

SENTENCE = "The lighthouse keeper climbed the stairs every evening to light the lamp."
OTHER = "Bananas are yellow when they are ripe."


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, SENTENCE)


def fingerprint(lm) -> list[float]:
    block = lm.model.model.layers[-1]
    return [float(p.double().sum()) for p in block.parameters()] + [float(lm.model.lm_head.weight.double().sum())]


def test_the_private_block_reproduces_the_models_own_loss(lm, ids):
    top = top_input(lm, ids)
    block = LastBlock(lm)
    assert block.value(top) == pytest.approx(model_own_loss(lm, ids), abs=1e-4)
    np.testing.assert_allclose(block.token_losses(top), token_losses(lm, ids).nll, atol=1e-4)
    expected = sum(p.numel() for p in lm.model.model.layers[-1].parameters())
    assert block.parameters == expected and block.index == lm.card.layers - 1


def test_a_small_step_lowers_the_loss_as_the_gradient_predicts(lm, ids):
    before = fingerprint(lm)
    result = gradient_steps(lm, ids, token_ids(lm, OTHER), lr=1e-3, steps=1)
    assert result.losses[1] < result.losses[0]
    measured = result.losses[1] - result.losses[0]
    assert measured == pytest.approx(result.predicted_first_change, rel=0.2)   # first order holds for a small step
    assert result.losses[0] == pytest.approx(model_own_loss(lm, ids), abs=1e-4)
    assert result.other_losses[0] == pytest.approx(model_own_loss(lm, token_ids(lm, OTHER)), abs=1e-4)
    assert result.token_losses_after.mean() == pytest.approx(result.losses[-1], abs=1e-5)
    assert fingerprint(lm) == before                                            # the shared weights are untouched
    assert not any(p.requires_grad for p in lm.model.parameters())


def test_more_steps_keep_lowering_the_loss_on_the_sentence(lm, ids):
    result = gradient_steps(lm, ids, token_ids(lm, OTHER), lr=3e-3, steps=4)
    assert len(result.losses) == 5 and len(result.other_losses) == 5 and len(result.grad_norms) == 4
    assert np.all(np.diff(result.losses) < 0)


def test_the_slice_passes_through_the_step(lm, ids):
    lr = 0.01
    step = gradient_steps(lm, ids, token_ids(lm, OTHER), lr=lr, steps=1)
    line = loss_slice(lm, ids, np.array([0.0, lr]))
    assert line.losses[0, 0] == pytest.approx(step.losses[0], abs=1e-4)
    assert line.losses[0, 1] == pytest.approx(step.losses[1], abs=1e-4)
    assert line.grad_norm == pytest.approx(step.grad_norms[0], rel=1e-4)
    plane = loss_slice(lm, ids, np.array([0.0, lr]), np.array([0.0, 0.1]), seed=1)
    assert plane.losses.shape == (2, 2) and plane.losses[0, 1] == pytest.approx(step.losses[1], abs=1e-4)
    assert plane.losses[1, 0] != pytest.approx(plane.losses[0, 0], abs=1e-6)   # the random direction moves it


def test_both_gradient_paths_agree_on_the_last_block(lm, ids):
    before = fingerprint(lm)
    grads = layer_gradients(lm, ids)
    _, block_grads = LastBlock(lm).gradient(top_input(lm, ids))
    names = [n for n, _ in lm.model.model.layers[-1].named_parameters()]
    by_name = dict(zip(names, block_grads))
    attention = torch.sqrt(sum(by_name[n].pow(2).sum() for n in names if n.startswith("self_attn")))
    ffn = torch.sqrt(sum(by_name[n].pow(2).sum() for n in names if n.startswith("mlp")))
    assert grads.attention[-1] == pytest.approx(float(attention), rel=1e-3)
    assert grads.ffn[-1] == pytest.approx(float(ffn), rel=1e-3)
    assert grads.loss == pytest.approx(model_own_loss(lm, ids), abs=1e-4)
    assert grads.attention.shape == (lm.card.layers,) and np.all(grads.attention > 0) and np.all(grads.ffn > 0)
    assert fingerprint(lm) == before
    assert all(p.grad is None for p in lm.model.parameters())


def test_short_input_is_refused(lm):
    with pytest.raises(ValueError):
        top_input(lm, [42])
    with pytest.raises(ValueError):
        gradient_steps(lm, [1, 2], [1, 2], lr=0.0)
