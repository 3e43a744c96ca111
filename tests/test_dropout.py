"""Dropout through the traced forward: an inverted, seeded mask that never touches its argument, and repeated
passes that agree exactly with p = 0 and differ with p > 0."""
import numpy as np
import pytest
import torch

from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from engine.training.dropout import FfnDropout, dropout_interventions, dropout_spread

PROMPT = "The capital of France is"


def test_the_dropout_mask_is_inverted_and_seeded(lm):
    ones = torch.ones(4, 1000)
    out = FfnDropout(0.25, 7)(3, ones)
    dropped = (out == 0).float().mean().item()
    assert 0.2 < dropped < 0.3 and np.allclose(out[out != 0].numpy(), 1 / 0.75)
    assert torch.equal(out, FfnDropout(0.25, 7)(3, ones))            # the seed fixes the mask
    assert not torch.equal(out, FfnDropout(0.25, 8)(3, ones))
    assert torch.equal(ones, torch.ones(4, 1000))                      # its argument is left as it is
    ids = token_ids(lm, PROMPT)
    assert np.array_equal(trace(lm, ids).logits, trace(lm, ids, interventions=Interventions()).logits)



def test_p_zero_is_the_models_own_pass_and_p_above_zero_is_not(lm):
    ids = token_ids(lm, PROMPT)
    assert dropout_interventions(0.0, 5) == Interventions()
    off = dropout_spread(lm, ids, 0.0, 3)
    assert off.max_spread == 0.0 and np.allclose(off.probs[0], off.clean)
    on = dropout_spread(lm, ids, 0.3, 3)
    assert on.max_spread > 0 and not np.array_equal(on.probs[0], on.probs[1])
    np.testing.assert_allclose(on.probs.sum(axis=1), 1.0, rtol=1e-9)
    with pytest.raises(ValueError):
        dropout_interventions(1.0, 0)
