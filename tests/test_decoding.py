"""engine.decoding.strategies: greedy traces are `generate`'s greedy path; beam search is transformers' beam search."""
import pytest
import torch

from engine.decoding.strategies import (beam_search, distinct_ngrams, greedy_trace, length_normalised, repeated_spans,
                             sequence_logprob)
from engine.decoding.generation import generate
from engine.tokens.offsets import token_ids

PROMPT = "The best way to learn a language is"


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, PROMPT)


def test_the_greedy_trace_is_generates_greedy_path(lm, ids):
    trace = greedy_trace(lm, ids, 12)
    assert trace.new_ids == generate(lm, PROMPT, 12).new_ids
    for step in trace.steps:
        assert step.top_ids[0] == step.chosen and step.margin >= 0
        assert list(step.top_probs) == sorted(step.top_probs, reverse=True)
    assert trace.logprob == pytest.approx(sequence_logprob(lm, ids, trace.new_ids), abs=1e-3)


def test_beam_width_one_is_greedy_and_wider_beams_find_likelier_text(lm, ids):
    greedy = greedy_trace(lm, ids, 10, stop_at_eos=False)
    one = beam_search(lm, ids, 1, 10, stop_at_eos=False)
    assert one.best_tokens == greedy.new_ids
    four = beam_search(lm, ids, 4, 10, stop_at_eos=False)
    assert four.logprob(four.best) >= greedy.logprob - 1e-4
    assert four.logprob(four.best) == pytest.approx(sequence_logprob(lm, ids, four.best_tokens), abs=1e-3)
    kept = [n for n in four.nodes if n.kept]
    assert len(kept) == 4 * 10 and len(four.nodes) == 4 + 4 * 4 * 9   # step 0 expands the prompt alone


@pytest.mark.parametrize("width", [2, 3])
def test_beam_search_matches_transformers(lm, ids, width):
    ours = beam_search(lm, ids, width, 8, length_penalty=1.0, stop_at_eos=False)
    with torch.inference_mode():
        theirs = lm.model.generate(torch.tensor([ids]), num_beams=width, do_sample=False, max_new_tokens=8,
                                   min_new_tokens=8, length_penalty=1.0, early_stopping=True,
                                   pad_token_id=lm.tokenizer.eos_token_id)
    assert ours.best_tokens == theirs[0, len(ids):].tolist()


def test_length_penalty_and_loops():
    assert length_normalised(-10.0, 5, 0.0) == -10.0 and length_normalised(-10.0, 5, 1.0) == -2.0
    assert repeated_spans([1, 2, 3, 4, 3, 4, 3, 4, 5]) == [(2, 2, 3)]
    assert repeated_spans([1, 2, 3]) == []
    assert distinct_ngrams([1, 2, 1, 2], 2) == pytest.approx(2 / 3)
