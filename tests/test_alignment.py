"""Refusal scoring and bounded generation, held to plain forward passes."""
import numpy as np
import pytest

from engine.decoding.bounded_generation import END_OF_TURN, STOPPED, TIME_LIMIT, TOKEN_LIMIT, generate_bounded
from engine.decoding.generation import generate, next_token_distribution
from engine.decoding.strategies import sequence_logprob
from engine.tokens.offsets import token_ids
from engine.using.alignment import (CAUTION_LEVELS, REFUSAL_OPENINGS, bundled_requests, chat_prompt, first_step,
                                    refusal_ids, refusal_probability, score_refusals)


def test_refusal_probability_adds_disjoint_openings():
    assert refusal_probability(np.log([0.01, 0.004, 0.001])) == pytest.approx(0.015)


def test_no_opening_is_a_token_prefix_of_another(lm):
    ids = refusal_ids(lm)
    for a in ids:
        for b in ids:
            assert a is b or a != b[:len(a)]


def test_first_step_equals_plain_forward_passes(lm):
    text = chat_prompt(lm, CAUTION_LEVELS[3].system, "How do I pick a lock?")
    ids = token_ids(lm, text)
    step = first_step(lm, ids, refusal_ids(lm))
    expected = [sequence_logprob(lm, ids, token_ids(lm, o)) for o in REFUSAL_OPENINGS]
    np.testing.assert_allclose(step.opening_logprobs, expected, atol=1e-4)
    np.testing.assert_allclose(step.probabilities, next_token_distribution(lm, text).probabilities, atol=1e-6)
    assert 0 < step.refusal < 1


def test_score_refusals_shapes_and_stop(lm):
    requests, kinds = bundled_requests("What is 2 + 2?")
    assert kinds[-1] == "yours" and bundled_requests(requests[0])[1][-1] != "yours"
    scores = score_refusals(lm, requests[:2], kinds[:2], CAUTION_LEVELS[:2])
    assert scores.opening_logprobs.shape == (2, 2, len(REFUSAL_OPENINGS)) and scores.complete
    assert scores.probabilities[1, 0] == pytest.approx(
        first_step(lm, token_ids(lm, chat_prompt(lm, CAUTION_LEVELS[1].system, requests[0])),
                   refusal_ids(lm)).refusal)
    assert np.isnan(scores.mean("yours")).all()
    stopped = score_refusals(lm, requests[:2], kinds[:2], CAUTION_LEVELS[:2], should_stop=lambda: True)
    assert not stopped.complete and stopped.opening_logprobs.shape == (0, 2, len(REFUSAL_OPENINGS))


def test_bounded_generation_is_greedy_and_says_why_it_ended(lm):
    text = chat_prompt(lm, "", "Say hello.")
    out = generate_bounded(lm, text, 6, budget_s=60)
    assert list(out.new_ids) == [i for i in generate(lm, text, 6).new_ids if i != lm.tokenizer.eos_token_id]
    assert out.ended_by in (END_OF_TURN, TOKEN_LIMIT) and len(out.new_ids) <= 6
    assert generate_bounded(lm, text, 50, budget_s=0).ended_by == TIME_LIMIT
    assert generate_bounded(lm, text, 50, budget_s=60, should_stop=lambda: True).ended_by == STOPPED
    with pytest.raises(ValueError):
        generate_bounded(lm, "", 5, 5)
