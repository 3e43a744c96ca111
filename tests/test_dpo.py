"""The DPO engine: ln 2 at step 0, the loss formula, the reference held to the model's own log-probabilities, and
real steps that widen the gap between chosen and rejected without touching the shared model."""
import math

import numpy as np
import pytest
import torch

from engine.training.dpo import answer_positions, dpo_loss, dpo_steps, preference_pair, reference_token_logprobs

PROMPT, CHOSEN, REJECTED = "What is the capital of France?", "The capital of France is Paris.", "I like turtles."


def test_the_loss_is_ln2_with_equal_margins_and_falls_as_the_gap_grows():
    assert dpo_loss(-5.0, -5.0, -9.0, -9.0, 0.1) == pytest.approx(math.log(2))
    assert dpo_loss(-4.0, -5.0, -10.0, -9.0, 0.5) == pytest.approx(-math.log(1 / (1 + math.exp(-0.5 * 2.0))))
    assert dpo_loss(-4.0, -5.0, -10.0, -9.0, 0.5) < math.log(2) < dpo_loss(-6.0, -5.0, -8.0, -9.0, 0.5)
    assert math.isfinite(dpo_loss(0.0, -1e6, -1e6, 0.0, 1.0))   # stable far from zero


def test_the_reference_is_the_models_own_log_probability_of_the_answer(lm):
    pair = preference_pair(lm, PROMPT, CHOSEN, REJECTED)
    example = pair.chosen
    positions = answer_positions(example)
    answer = lm.tokenizer.decode([example.ids[t] for t in positions])
    assert answer.startswith(CHOSEN) and answer.endswith("<|im_end|>")
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(torch.tensor([example.ids])).logits[0].double(), -1)
    expected = [float(logp[t - 1, example.ids[t]]) for t in positions]
    np.testing.assert_allclose(reference_token_logprobs(lm, example), expected, atol=1e-4)


def test_dpo_steps_start_at_ln2_widen_the_gap_and_leave_the_model_alone(lm):
    before = lm.model.model.layers[-1].mlp.down_proj.weight.clone()
    pair = preference_pair(lm, PROMPT, CHOSEN, REJECTED)
    run = dpo_steps(lm, [pair], beta=0.5, steps=3, lr=3e-4, blocks=1)
    assert run.losses[0] == pytest.approx(math.log(2), abs=1e-12)
    assert run.steps_done == 3 and run.chosen_logprobs.shape == (4, 1)
    ref_c = reference_token_logprobs(lm, pair.chosen).sum()
    assert run.chosen_logprobs[0, 0] == pytest.approx(ref_c, abs=1e-3)    # the copy starts as the model
    c, r = run.chosen_logprobs[:, 0], run.rejected_logprobs[:, 0]
    gap = (c - c[0]) - (r - r[0])
    assert gap[-1] > 0 and run.losses[-1] < math.log(2)
    assert run.pair_losses()[0] == pytest.approx(run.losses[-1])
    np.testing.assert_allclose(run.chosen_tokens_after[0].sum(), run.chosen_logprobs[-1, 0], atol=1e-6)
    assert torch.equal(before, lm.model.model.layers[-1].mlp.down_proj.weight)
