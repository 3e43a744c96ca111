"""The benchmark engine: scores equal plain forward passes, the set scorer equals the one-item scorer, the interval
and Min-K% follow their definitions."""
import math

import numpy as np
import torch

from engine.using.benchmarks import (LETTERS, TextReading, accuracy, cloze_prompt, letter_prompt, load_items,
                               load_passages, read_text, score_item, score_set, wilson_interval)
from engine.tokens.offsets import token_ids
from tests.test_prompting import plain_logprobs


def test_bundled_items_are_well_formed_and_answers_spread_over_the_letters():
    items = load_items()
    assert len(items) == 24
    letters = {item.answer for item in items}
    assert len(letters) == len(LETTERS)            # no letter bias in the key itself
    assert all(len(set(i.choices)) == 4 for i in items)
    passages = load_passages()
    assert len(passages) >= 3 and all(p.verbatim != p.paraphrase for p in passages)


def test_one_item_scores_are_plain_forward_log_likelihoods(lm):
    item = load_items()[3]
    scored = score_item(lm, item)
    letter_prompt_ids = token_ids(lm, letter_prompt(item))
    expected_letters = [plain_logprobs(lm, letter_prompt_ids, token_ids(lm, " " + x))[0] for x in LETTERS]
    np.testing.assert_allclose(scored.letter_logprobs, expected_letters, atol=2e-3)
    cloze = token_ids(lm, cloze_prompt(item))
    for choice, got in zip(item.choices, scored.text_logprobs):
        np.testing.assert_allclose(got, plain_logprobs(lm, cloze, token_ids(lm, " " + choice)), atol=2e-3)
    summed = np.array([sum(x) for x in scored.text_logprobs])
    np.testing.assert_allclose(scored.scores("summed"), summed)
    np.testing.assert_allclose(scored.scores("per_byte"),
                               summed / np.array([len((" " + c).encode()) for c in item.choices]))
    assert scored.predicted("letters") == int(np.argmax(expected_letters))


def test_the_set_scorer_gives_the_one_item_scores_and_stops_when_asked(lm):
    items = load_items()[:2]
    steps = []
    scored = score_set(lm, items, on_step=lambda done, total: steps.append((done, total)))
    assert steps[-1] == (4, 4)
    for got, item in zip(scored, items):
        alone = score_item(lm, item)
        np.testing.assert_allclose(got.letter_logprobs, alone.letter_logprobs, atol=2e-3)
        for a, b in zip(got.text_logprobs, alone.text_logprobs):
            np.testing.assert_allclose(a, b, atol=2e-3)
    assert score_set(lm, items, should_stop=lambda: True) is None
    acc = accuracy(scored, "summed")
    assert (acc.correct, acc.total) == (sum(s.correct("summed") for s in scored), 2)


def test_wilson_interval_matches_its_closed_form():
    z = 1.959964
    low, high = wilson_interval(0, 10)
    assert low == 0 and math.isclose(high, z * z / (10 + z * z), rel_tol=1e-9)   # at 0 correct: z^2/(n+z^2)
    low, high = wilson_interval(15, 24)
    assert low < 15 / 24 < high and math.isclose(low, 0.4271, abs_tol=1e-4) and math.isclose(high, 0.7884, abs_tol=1e-4)
    a, b = wilson_interval(7, 20)
    c, d = wilson_interval(13, 20)
    assert math.isclose(a, 1 - d) and math.isclose(b, 1 - c)                      # symmetric in right/wrong
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_min_k_averages_the_least_likely_tokens():
    reading = TextReading((1, 2, 3, 4, 5, 6), np.array([-0.1, -5.0, -0.2, -3.0, -0.3]), np.ones(5, bool))
    assert reading.min_k(20) == -5.0                  # ceil(20% of 5) = 1 token
    assert reading.min_k(40) == -4.0                  # the two lowest: -5 and -3
    assert math.isclose(reading.min_k(100), float(reading.logprobs.mean()))
    assert math.isclose(reading.perplexity, math.exp(1.72))


def test_read_text_is_the_models_own_next_token_log_probabilities(lm):
    text = load_passages()[0].verbatim
    reading = read_text(lm, text)
    ids = token_ids(lm, text)
    with torch.inference_mode():
        logprobs = torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].float(), -1)
    expected = logprobs[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()
    np.testing.assert_allclose(reading.logprobs, expected, atol=1e-4)
    np.testing.assert_array_equal(reading.top1, logprobs[:-1].argmax(-1).numpy() == np.array(ids[1:]))
