"""engine.decoding.loss: per-token losses are the model's own loss; ranks and sliding windows are right."""
import math

import numpy as np
import pytest
import torch

from engine.decoding.loss import (bits_per_byte, rank_bucket, sliding_window_perplexity, token_losses, window_plan)
from engine.tokens.offsets import token_ids

TEXT = "The cat sat on the mat. It was a warm afternoon, and the cat was happy to sleep in the sun."


@pytest.fixture(scope="module")
def ids(lm):
    return token_ids(lm, TEXT)


def test_token_losses_are_the_models_own_loss(lm, ids):
    result = token_losses(lm, ids)
    with torch.inference_mode():
        out = lm.model(torch.tensor([ids]), labels=torch.tensor([ids]))
    assert result.mean_nll == pytest.approx(out.loss.item(), rel=1e-5)
    probs = torch.softmax(out.logits[0, :-1], -1)
    actual = probs[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    np.testing.assert_allclose(result.probs, actual.numpy(), rtol=1e-4)
    expected_ranks = (probs > actual[:, None]).sum(-1).numpy() + 1
    np.testing.assert_array_equal(result.ranks, expected_ranks)
    assert (result.top_ids[:, 0] == probs.argmax(-1).numpy()).all()
    np.testing.assert_allclose(result.log_partition - result.logit, result.nll, rtol=1e-5, atol=1e-5)
    assert result.uniform_nll == pytest.approx(math.log(lm.model.config.vocab_size))
    assert result.perplexity < math.exp(result.uniform_nll)


def test_rank_buckets_and_bits_per_byte():
    assert [rank_bucket(r) for r in (1, 10, 11, 100, 101, 1000, 1001)] == [
        "top 10", "top 10", "top 100", "top 100", "top 1,000", "top 1,000", "beyond 1,000"]
    assert bits_per_byte(math.log(2) * 8, 4) == pytest.approx(2.0)


@pytest.mark.parametrize("length, window, stride", [(10, 4, 1), (10, 4, 3), (23, 8, 5), (5, 16, 8), (2, 2, 1)])
def test_every_position_is_scored_once(length, window, stride):
    plan = window_plan(length, window, stride)
    scored = [p for _, end, first in plan for p in range(first, end)]
    assert scored == list(range(1, length))
    assert all(end - begin <= window and begin < first for begin, end, first in plan)


def test_stride_must_stay_below_the_window():
    with pytest.raises(ValueError):
        window_plan(10, 4, 4)


def test_a_window_over_the_whole_text_is_the_plain_loss(lm, ids):
    whole = sliding_window_perplexity(lm, ids, window=len(ids), stride=1)
    assert whole.passes == 1
    assert whole.perplexity == pytest.approx(token_losses(lm, ids).perplexity, rel=1e-5)
    np.testing.assert_array_equal(whole.context, np.arange(1, len(ids)))


def test_less_context_means_higher_perplexity(lm, ids):
    short = sliding_window_perplexity(lm, ids, window=8, stride=7)
    overlapped = sliding_window_perplexity(lm, ids, window=8, stride=1)
    assert short.passes < overlapped.passes
    assert short.context.min() == 1 and overlapped.context[6:].min() == 7
    assert short.perplexity > overlapped.perplexity > token_losses(lm, ids).perplexity


def test_a_stride_sweep_covers_its_strides_and_stops_when_asked(lm, ids):
    from engine.decoding.loss import stride_sweep, sweep_strides
    assert sweep_strides(16) == [1, 2, 4, 8, 15] and sweep_strides(2) == [1]
    steps = []
    results = stride_sweep(lm, ids[:20], 8, on_step=lambda done, total: steps.append((done, total)))
    assert [r.stride for r in results] == [1, 2, 4, 7]
    assert steps[-1][0] == steps[-1][1] == sum(r.passes for r in results)
    assert stride_sweep(lm, ids[:20], 8, should_stop=lambda: True) == []


def test_shuffled_words_keep_the_words():
    from engine.decoding.loss import shuffle_words
    text = "the cat sat on the mat today"
    shuffled = shuffle_words(text, 3)
    assert sorted(shuffled.split()) == sorted(text.split()) and shuffled == shuffle_words(text, 3)
    assert shuffled != text
