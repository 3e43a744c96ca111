"""engine.decoding.penalties: the three penalties follow their formulas, the multiplicative one is transformers' own."""
import numpy as np
import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from engine.decoding.generation import generate
from engine.decoding.penalties import Penalty, generate_with_penalty, penalized
from engine.tokens.offsets import token_ids

LOGITS = np.array([2.0, -2.0, 1.0, 0.5, -0.5], dtype=np.float32)


def test_multiplicative_penalty_is_sign_aware_and_matches_transformers():
    out = penalized(LOGITS, [0, 1, 1], Penalty("multiplicative", 2.0))
    np.testing.assert_allclose(out, [1.0, -4.0, 1.0, 0.5, -0.5])     # both seen logits go down
    theirs = RepetitionPenaltyLogitsProcessor(2.0)(torch.tensor([[0, 1, 1]]), torch.tensor(LOGITS)[None])[0]
    np.testing.assert_allclose(out, theirs.numpy())


def test_frequency_counts_repeats_and_presence_does_not():
    np.testing.assert_allclose(penalized(LOGITS, [0, 1, 1], Penalty("frequency", 0.5)), [1.5, -3.0, 1.0, 0.5, -0.5])
    np.testing.assert_allclose(penalized(LOGITS, [0, 1, 1], Penalty("presence", 0.5)), [1.5, -2.5, 1.0, 0.5, -0.5])
    assert penalized(LOGITS, [], Penalty("presence", 9.0)).tolist() == LOGITS.tolist()
    with pytest.raises(ValueError):
        Penalty("sideways", 1.0)


def test_generation_without_penalty_is_greedy_and_with_it_is_transformers(lm):
    prompt = "I love you. I love you. I"
    ids = token_ids(lm, prompt)
    assert list(generate_with_penalty(lm, ids, 10, Penalty("multiplicative", 1.0)).new_ids) == \
        generate(lm, prompt, 10).new_ids
    ours = generate_with_penalty(lm, ids, 10, Penalty("multiplicative", 1.3), stop_at_eos=False)
    with torch.inference_mode():
        theirs = lm.model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=10, min_new_tokens=10,
                                   repetition_penalty=1.3, pad_token_id=lm.tokenizer.eos_token_id)
    assert list(ours.new_ids) == theirs[0, len(ids):].tolist()
    assert ours.first_seen == tuple(ids)
    off_prompt = generate_with_penalty(lm, ids, 3, Penalty("presence", 5.0, count_prompt=False))
    assert off_prompt.first_seen == ()
