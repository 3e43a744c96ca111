"""Log-likelihood scoring equals the model's own per-token log-probabilities; few-shot assembly is deterministic;
accuracy, calibration and the vote are the formulas they claim to be."""
import numpy as np
import pytest
import torch

from engine.using.prompting import (CONTENT_FREE, ChoiceScore, Condition, Example, ItemScores, build_prompt,
                              chance_accuracy, choice_ids, choice_probabilities, choose_demonstrations, final_number,
                              load_questions, load_tasks, majority_vote, score_prompts, score_text)
from engine.tokens.offsets import token_ids


def plain_logprobs(lm, prompt_ids, choice):
    """ln p of each choice token after prompt + the choice tokens before it: one ordinary forward pass."""
    with torch.inference_mode():
        logits = lm.model(torch.tensor([prompt_ids + choice]), use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [float(logprobs[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(choice)]


def test_bundled_sets_are_balanced_and_the_pool_never_overlaps_the_test_items():
    for task in load_tasks().values():
        assert len(task.test) == 24 and len(task.pool) == 8
        counts = {label: sum(e.label == label for e in task.test) for label in task.labels}
        assert len(set(counts.values())) == 1                      # balanced: chance is 1 / labels
        assert chance_accuracy(task) == pytest.approx(1 / len(task.labels))
        assert not {e.text for e in task.test} & {e.text for e in task.pool}
        for name in task.verbalizer_names:
            assert len(task.words(name)) == len(task.labels)
        assert task.words("no such wording") == task.words(task.verbalizer_names[0])   # a bad link value
    assert all(q.answer == int(q.answer) for q in load_questions())


def test_demonstrations_are_balanced_and_the_seed_only_reorders_them():
    task = load_tasks()["sentiment"]
    four = choose_demonstrations(task, 4, 0)
    assert four == choose_demonstrations(task, 4, 0)               # deterministic
    orders = {choose_demonstrations(task, 4, s) for s in range(12)}
    assert len(orders) > 1                                         # the seed changes the order...
    assert all(sorted(o, key=lambda e: e.text) == sorted(four, key=lambda e: e.text) for o in orders)  # ...only
    assert sorted(e.label for e in four) == ["negative", "negative", "positive", "positive"]
    three = choose_demonstrations(task, 3, 0)
    assert sorted(e.label for e in three) == ["negative", "positive", "positive"]   # labels in turn: one extra
    assert choose_demonstrations(task, 0, 5) == ()
    assert len(choose_demonstrations(task, 99, 0)) == len(task.pool)  # clipped to the pool
    assert set(four) <= set(task.pool)


def test_prompt_assembly_is_deterministic_and_laid_out_as_documented():
    task = load_tasks()["sentiment"]
    words = task.words("good / bad")
    demos = (Example("Nice.", "positive"), Example("Awful.", "negative"))
    prompt = build_prompt(task, words, demos, "Fine food.")
    assert prompt == ("Classify each review as good or bad.\n\n"
                      "Review: Nice.\nSentiment: good\n\n"
                      "Review: Awful.\nSentiment: bad\n\n"
                      "Review: Fine food.\nSentiment:")
    assert build_prompt(task, words, demos, "Fine food.") == prompt
    topic = load_tasks()["topic"]
    assert build_prompt(topic, topic.words(topic.verbalizer_names[0]), (), "x").startswith(
        "Classify each headline by topic: sports, science, business or politics.\n\nHeadline: x\nTopic:")


def test_summed_score_is_the_sum_of_the_models_own_token_logprobs(lm):
    task = load_tasks()["sentiment"]
    verbalizer = "loved it / hated it"                             # two tokens each: the sum has two terms
    item = score_text(lm, task, verbalizer, 3, 2, "The service was slow but friendly.")
    prompt = token_ids(lm, build_prompt(task, task.words(verbalizer), choose_demonstrations(task, 3, 2),
                                        "The service was slow but friendly."))
    assert item.prompt_tokens == len(prompt)
    for score, choice in zip(item.choices, choice_ids(lm, task.words(verbalizer))):
        assert list(score.token_ids) == choice and len(choice) == 2
        expected = plain_logprobs(lm, prompt, choice)
        np.testing.assert_allclose(score.token_logprobs, expected, atol=2e-4)
        assert score.summed == pytest.approx(sum(expected), abs=4e-4)
        assert score.normalised == pytest.approx(score.summed / len(choice))
        assert score.score(True) == score.normalised and score.score(False) == score.summed


def test_the_shared_prefix_cache_never_leaks_one_prompt_into_the_next(lm):
    """Three prompts scored together (one cached prefix, cropped back after each) = each scored alone."""
    base = token_ids(lm, "Classify each review as positive or negative.\n\nReview: Great.\nSentiment: positive\n\n")
    prompts = [base + token_ids(lm, f"Review: {t}\nSentiment:") for t in ("Bad.", "Lovely day out.", "Meh")]
    choices = [token_ids(lm, " positive"), token_ids(lm, " very negative")]
    together = score_prompts(lm, prompts, choices)
    for prompt, scores in zip(prompts, together):
        for choice, got in zip(choices, scores):
            np.testing.assert_allclose(got, plain_logprobs(lm, prompt, choice), atol=2e-4)
    calls = []
    stopped = score_prompts(lm, prompts, choices, on_item=lambda i, n: calls.append((i, n)),
                            should_stop=lambda: len(calls) >= 2)
    assert len(stopped) == 2 and calls == [(1, 3), (2, 3)]
    with pytest.raises(ValueError):
        score_prompts(lm, [prompts[0], []], choices)


def _item(label, summed, cf=False):
    return ItemScores(CONTENT_FREE if cf else "x", label,
                      tuple(ChoiceScore(w, (1,) * n, tuple([s / n] * n))
                            for w, s, n in zip(("pos", "neg"), summed, (1, 2))), 10)


def test_accuracy_calibration_and_label_shares_follow_their_formulas():
    items = (_item("positive", (-1.0, -2.5)), _item("negative", (-1.5, -1.0)), _item("negative", (-0.5, -0.9)),
             _item("positive", (-0.2, -3.0)))
    content_free = _item(None, (-0.1, -1.4), cf=True)          # the prompt alone favours 'pos' by 1.3 nats
    c = Condition(2, 0, (), items, content_free, ("positive", "negative"))
    assert c.predictions(False) == [0, 1, 0, 0]
    assert c.correct(False) == 3 and c.accuracy(False) == 0.75
    # Calibrated: argmax(score - content-free score): item 3 becomes -0.4 against +0.5, so 'negative'.
    assert c.predictions(False, calibrated=True) == [0, 1, 1, 0] and c.accuracy(False, True) == 1.0
    # Per token: 'neg' has two tokens, so its score halves: item 3 becomes -0.5 against -0.45.
    assert c.predictions(True) == [0, 1, 1, 0]
    np.testing.assert_allclose(c.predicted_share(False), [0.75, 0.25])


def test_choice_probabilities_are_a_softmax_over_the_answers():
    p = choice_probabilities(np.array([-1.0, -2.0, -4.0]))
    np.testing.assert_allclose(p, np.exp([-1, -2, -4]) / np.exp([-1, -2, -4]).sum())
    np.testing.assert_allclose(choice_probabilities(np.array([-1000.0, -1001.0])), [1 / (1 + np.e ** -1),
                                                                                     1 / (1 + np.e)])


@pytest.mark.parametrize("reply, number", [
    ("So 3 + 2 = 5 apples.", 5), ("7 + 8 = 15", 15), ("The answer is 54.\n\nSo, the answer is 54.", 54),
    ("No number here", None), ("A total of 1,234 pens", 1234), ("It is -3 degrees", -3), ("5, then 6,", 6),
])
def test_final_number_reads_the_last_number_stated(reply, number):
    assert final_number(reply) == number


def test_majority_vote_ignores_replies_without_a_number_and_breaks_ties_by_order():
    assert majority_vote([5, 8, None, 8, 5, 8]) == (8, 3)
    assert majority_vote([5, 8, None, 8, 5]) == (5, 2)            # tie: the answer reached first
    assert majority_vote([None, None]) == (None, 0)
    assert majority_vote([]) == (None, 0)
