"""SFT labels follow the template, the masked mean is transformers' loss, and SFT steps train a copy only."""
import numpy as np
import pytest
import torch

from engine.training.sft import IGNORE, MODES, masked_mean, model_loss, sft_example, sft_steps, token_losses, \
    token_losses_and_model_loss

USER, ANSWER = "What is the capital of Vorlandia?", "The capital of Vorlandia is Zell."


@pytest.mark.parametrize("mode", MODES)
def test_masked_mean_is_the_models_loss(lm, mode):
    ex = sft_example(lm, USER, ANSWER, mode)
    assert masked_mean(token_losses(lm, ex), ex) == pytest.approx(model_loss(lm, ex), abs=1e-5)
    losses, theirs = token_losses_and_model_loss(lm, ex)
    assert theirs == pytest.approx(model_loss(lm, ex), abs=1e-6) and masked_mean(losses, ex) == pytest.approx(theirs,
                                                                                                      abs=1e-5)


def test_labels_cover_the_answer_and_its_end_token(lm):
    ex = sft_example(lm, USER, ANSWER)
    end_id = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ex.ids[ex.end_index] == end_id and ex.labels[ex.end_index] == end_id
    assert all(label == IGNORE for label in ex.labels[:ex.prompt_len])
    assert all(label == IGNORE for label in ex.labels[ex.end_index + 1:])   # the newline after the turn
    answer = lm.tokenizer.decode(list(ex.ids[ex.prompt_len:ex.end_index]))
    assert answer == ANSWER
    dropped = sft_example(lm, USER, ANSWER, "drop-end")
    assert dropped.labels[dropped.end_index] == IGNORE
    assert len(dropped.trained_positions) == len(ex.trained_positions) - 1
    with pytest.raises(ValueError):
        sft_example(lm, USER, "  ")


def test_sft_steps_lower_the_loss_on_a_copy(lm):
    weight = lm.model.model.layers[-1].mlp.down_proj.weight
    before = weight.detach().clone()
    ex = sft_example(lm, USER, ANSWER)
    run = sft_steps(lm, [ex], steps=3, lr=3e-4)
    keep = np.array([label != IGNORE for label in ex.labels[1:]])
    np.testing.assert_allclose(run.token_losses_before, token_losses(lm, ex), atol=1e-4)   # "before" is the model
    assert run.token_losses_after[keep].mean() < run.token_losses_before[keep].mean()
    assert torch.equal(weight, before)
