"""engine.decoding.diversity: distinct-n and similarity measure what they claim; sampling is seeded; T = 0 is greedy."""
import numpy as np
import pytest

from engine.decoding.diversity import distinct_n, diversity_at, mean_pairwise_similarity, temperature_sweep
from engine.model.encoder import load_encoder
from engine.decoding.generation import generate


def test_distinct_n_and_similarity_by_hand():
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)
    assert distinct_n([[1, 2, 3], [1, 2, 3]], 1) == pytest.approx(3 / 6)
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert mean_pairwise_similarity(e) == pytest.approx(1 / 3)
    assert np.isnan(mean_pairwise_similarity(e[:1]))


def test_same_seed_same_samples_and_zero_temperature_is_greedy(lm):
    encoder = load_encoder()
    prompt = "My favourite animal is"
    hot = diversity_at(lm, encoder, prompt, 1.2, 3, 8, seed=7)
    assert hot == diversity_at(lm, encoder, prompt, 1.2, 3, 8, seed=7)
    assert hot.texts[1] == generate(lm, prompt, 8, temperature=1.2, seed=8).new_text
    cold = diversity_at(lm, encoder, prompt, 0.0, 3, 8, seed=7)
    assert set(cold.texts) == {generate(lm, prompt, 8).new_text}
    assert cold.similarity == pytest.approx(1.0, abs=1e-5) and cold.distinct_2 < hot.distinct_2
    steps = []
    points = temperature_sweep(lm, encoder, prompt, [0.0, 1.2], 3, 8, 7, on_step=lambda d, t: steps.append(d))
    assert [p.temperature for p in points] == [0.0, 1.2] and steps == [1, 2] and points[1] == hot
