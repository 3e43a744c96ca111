"""The RLHF engine: batched sampling matches generate(), the Bradley-Terry fit is the penalised optimum, best-of-n
expectations are exact, the judge penalises repetition, and KL is 0 only for identical distributions."""
import itertools
import math

import numpy as np
import pytest

from engine.decoding.generation import generate
from engine.training.reward_model import (best_of_n, best_of_n_weights, bradley_terry_objective, fit_bradley_terry,
                                          judge_scores, kl_per_position_bits, sample_batch, softmax_rows,
                                          training_agreement)


def test_a_batch_of_one_draws_what_generate_draws(lm):
    text = "The best thing about the sea is"
    one = sample_batch(lm, text, 1, 8, temperature=1.0, seed=7)
    assert list(one.new_ids[0]) == generate(lm, text, 8, temperature=1.0, seed=7).new_ids
    batch = sample_batch(lm, text, 3, 4, temperature=1.0, seed=7)
    assert len(batch.texts) == 3 and all(1 <= len(ids) <= 4 for ids in batch.new_ids)
    assert batch == sample_batch(lm, text, 3, 4, temperature=1.0, seed=7)   # seeded: the same draw again


def _gradient(model, chosen, rejected):
    diff = chosen - rejected
    margins = diff @ model.weights
    return (diff * (1 / (1 + np.exp(margins)))[:, None]).sum(0) - model.l2 * model.weights


@pytest.mark.parametrize("l2", [0.01, 1.0, 10.0])
def test_the_fit_maximises_the_penalised_bradley_terry_likelihood(l2):
    rng = np.random.default_rng(0)
    chosen, rejected = rng.normal(size=(6, 16)), rng.normal(size=(6, 16))
    model = fit_bradley_terry(chosen, rejected, l2)
    assert np.abs(_gradient(model, chosen, rejected)).max() < 1e-4
    best = bradley_terry_objective(model, chosen, rejected)
    for _ in range(5):
        nudged = type(model)(weights=model.weights + 1e-2 * rng.normal(size=16), l2=l2, pairs=6)
        assert bradley_terry_objective(nudged, chosen, rejected) < best


def test_the_reward_model_agrees_with_separable_labels_and_weakens_with_l2():
    rng = np.random.default_rng(1)
    direction = rng.normal(size=8)
    a, b = rng.normal(size=(10, 8)), rng.normal(size=(10, 8))
    chosen = np.where((a @ direction > b @ direction)[:, None], a, b)
    rejected = np.where((a @ direction > b @ direction)[:, None], b, a)
    loose, tight = fit_bradley_terry(chosen, rejected, 0.01), fit_bradley_terry(chosen, rejected, 100.0)
    assert training_agreement(loose, chosen, rejected) == 1.0
    assert np.linalg.norm(tight.weights) < np.linalg.norm(loose.weights)
    flipped = fit_bradley_terry(rejected, chosen, 0.01)
    np.testing.assert_allclose(flipped.weights, -loose.weights, atol=1e-6)   # swapping every label mirrors r


def test_best_of_n_weights_are_the_exact_order_statistics():
    for pool, n in [(5, 1), (5, 2), (6, 3), (6, 6)]:
        w = best_of_n_weights(pool, n)
        assert w.sum() == pytest.approx(1.0)
        counts = np.zeros(pool)   # enumerate every n-subset: the highest rank in it wins
        for subset in itertools.combinations(range(pool), n):
            counts[max(subset)] += 1
        np.testing.assert_allclose(w, counts / counts.sum())


def test_best_of_n_proxy_rises_from_the_mean_to_the_max():
    rng = np.random.default_rng(2)
    proxy, judge = rng.normal(size=12), rng.normal(size=12)
    result = best_of_n(proxy, judge, [1, 2, 4, 12])
    assert result.proxy[0] == pytest.approx(proxy.mean()) and result.judge[0] == pytest.approx(judge.mean())
    assert result.proxy[-1] == pytest.approx(proxy.max())
    assert result.judge[-1] == pytest.approx(judge[np.argmax(proxy)])
    assert np.all(np.diff(result.proxy) >= -1e-12)
    assert result.kl_bound_nats[0] == 0.0 and result.kl_bound_nats[2] == pytest.approx(math.log(4) - 3 / 4)


def test_the_judge_rewards_relevance_and_penalises_repetition():
    prompt = np.array([1.0, 0.0])
    on, off = np.array([0.9, 0.1]), np.array([0.1, 0.9])
    text = "Go to bed at the same time every night and keep your room dark and quiet so you sleep well"
    scores = judge_scores(np.array([on, off, on]), prompt, [text, text, "sleep " * 20])
    assert scores[0] > scores[1] and scores[0] > scores[2]


def test_kl_is_zero_for_identical_distributions_and_positive_otherwise():
    logits = np.random.default_rng(3).normal(size=(4, 50))
    reference = softmax_rows(logits)
    np.testing.assert_allclose(reference.sum(-1), 1.0)
    assert np.all(kl_per_position_bits(reference, reference) == 0)
    assert np.all(kl_per_position_bits(softmax_rows(logits, 0.5), reference) > 0)
