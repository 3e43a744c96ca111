"""engine.decoding.semantic_entropy: the entropy formula, a deterministic grouping, token confidence read from the model."""
import math

import numpy as np
import pytest
import torch

from engine.model.encoder import embed_sentences, load_encoder
from engine.decoding.generation import generate
from engine.decoding.semantic_entropy import (NOTHING_NEW, answer_core, cluster_sizes, greedy_answer, meaning_clusters,
                                     question_prompt, sample_answers, score_answer, semantic_entropy_bits)
from engine.tokens.offsets import token_ids


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def test_entropy_is_zero_for_one_group_and_log2_n_for_n_equal_groups():
    assert semantic_entropy_bits([7]) == 0.0
    for n in range(2, 11):
        assert semantic_entropy_bits([3] * n) == pytest.approx(math.log2(n), abs=1e-12)
    assert semantic_entropy_bits([3, 1]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert semantic_entropy_bits([2, 0, 2]) == pytest.approx(1.0)     # an empty group adds nothing
    assert math.isnan(semantic_entropy_bits([]))
    assert semantic_entropy_bits([5, 1]) < semantic_entropy_bits([3, 3])  # a balanced split is more uncertain


def test_grouping_is_deterministic_and_compares_with_each_groups_first_answer():
    # A ~ B and B ~ C, but A !~ C: C is compared with A (its group's first answer), so it starts a new group.
    sims = np.array([[1.0, 0.9, 0.5, 0.2],
                     [0.9, 1.0, 0.9, 0.2],
                     [0.5, 0.9, 1.0, 0.95],
                     [0.2, 0.2, 0.95, 1.0]])
    labels = meaning_clusters(sims, 0.8)
    assert labels == (0, 0, 1, 1) and labels == meaning_clusters(sims.copy(), 0.8)
    assert cluster_sizes(labels) == (2, 2) and semantic_entropy_bits(cluster_sizes(labels)) == pytest.approx(1.0)
    assert meaning_clusters(sims, 0.0) == (0, 0, 0, 0)                # everything alike: one group
    assert meaning_clusters(sims, 0.99) == (0, 1, 2, 3)               # nothing alike but itself
    assert meaning_clusters(np.zeros((0, 0)), 0.5) == () and cluster_sizes(()) == ()


def test_answer_core_keeps_what_the_answer_adds():
    q = "What is the capital of France?"
    assert answer_core(q, "The capital of France is Paris.") == "Paris"
    assert answer_core(q, "THE CAPITAL OF FRANCE.") == NOTHING_NEW
    assert answer_core("Who painted the Mona Lisa?", "It was painted by Leonardo da Vinci.") == "Leonardo da Vinci"


def test_minilm_on_whole_answers_lumps_different_cities_together_but_not_on_their_cores(encoder):
    """Why the page compares cores by default: the echoed question dominates a whole answer's embedding."""
    q = "What is the capital of France?"
    answers = ["The capital of France is Paris.", "The capital of France is Marseille."]
    whole = embed_sentences(encoder, answers)
    cores = embed_sentences(encoder, [answer_core(q, a) for a in answers])
    assert float(whole[0] @ whole[1]) > 0.75 > float(cores[0] @ cores[1])


def test_token_confidence_is_the_models_own_probability(lm):
    prompt = question_prompt(lm, "What is the capital of France?")
    assert prompt.endswith("<|im_start|>assistant\n") and "Answer in one short sentence." in prompt
    answer = greedy_answer(lm, prompt, 12)
    gen = generate(lm, prompt, 12)
    eos = lm.tokenizer.eos_token_id
    assert list(answer.answer_ids) == [i for i in gen.new_ids if i != eos] and answer.answer_ids
    np.testing.assert_allclose(answer.probabilities, gen.chosen_probabilities[:len(answer.answer_ids)], rtol=1e-4)
    ids = token_ids(lm, prompt) + list(answer.answer_ids)
    with torch.no_grad():
        probs = torch.softmax(lm.model(torch.tensor([ids])).logits[0].double(), -1)
    n = len(token_ids(lm, prompt))
    expected = [float(probs[n - 1 + k, t]) for k, t in enumerate(answer.answer_ids)]
    np.testing.assert_allclose(answer.probabilities, expected, rtol=1e-6)
    entropy = [float(-(p * torch.log2(p.clamp_min(1e-300))).sum()) for p in probs[n - 1:n - 1 + len(expected)]]
    np.testing.assert_allclose(answer.entropies, entropy, rtol=1e-6, atol=1e-9)
    assert np.all(answer.runner_up_probabilities <= answer.probabilities)   # greedy took the top token
    assert 0 < answer.mean_probability <= 1 and answer.mean_entropy >= 0
    empty = score_answer(lm, token_ids(lm, prompt), [])
    assert math.isnan(empty.mean_probability) and empty.answer_ids == ()


def test_same_seed_same_samples_and_greedy_samples_form_one_group(lm, encoder):
    q = "What is the chemical symbol for gold?"
    prompt = question_prompt(lm, q)
    first = sample_answers(lm, encoder, q, prompt, 3, 6, 1.0, seed=11)
    again = sample_answers(lm, encoder, q, prompt, 3, 6, 1.0, seed=11)
    assert first.answers == again.answers and first.complete
    np.testing.assert_array_equal(first.core_vectors, again.core_vectors)
    assert first.answers[2].text == generate(lm, prompt, 6, temperature=1.0, seed=13).new_text.strip()
    assert [a.seed for a in first.answers] == [11, 12, 13]
    np.testing.assert_allclose(np.linalg.norm(first.whole_vectors, axis=1), 1.0, rtol=1e-5)

    cold = sample_answers(lm, encoder, q, prompt, 3, 6, 0.0, seed=0)   # T = 0: three times the greedy answer
    assert len({a.text for a in cold.answers}) == 1
    for cores in (True, False):
        assert cluster_sizes(meaning_clusters(cold.similarity(cores), 0.99)) == (3,)
    steps = []
    stopped = sample_answers(lm, encoder, q, prompt, 3, 4, 1.0, 0, on_step=lambda d, t: steps.append(d),
                             should_stop=lambda: len(steps) >= 1)
    assert len(stopped.answers) == 1 and not stopped.complete and steps == [1]
