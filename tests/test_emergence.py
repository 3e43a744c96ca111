"""Emergence engine: deterministic problems, digit-per-token answers, teacher-forced probabilities that equal the
model's own, and an exact-match probability that is their product."""
import numpy as np
import pytest
import torch

from charts.emergence import answer_tokens, power_curves, two_metrics
from engine.tokens.offsets import decode_each, token_ids
from engine.training.emergence import MAX_DIGITS, problem, prompt_for, score, summarize


@pytest.mark.parametrize("operation", ["add", "sub", "mul"])
def test_problems_are_fixed_by_their_seed_and_have_k_digit_operands(operation):
    for k in range(1, MAX_DIGITS + 1):
        p = problem(operation, k, 3, seed=5)
        assert p == problem(operation, k, 3, seed=5)
        assert len(str(p.a)) == k and (len(str(p.b)) == 1 if operation == "mul" else len(str(p.b)) == k)
        assert p.answer >= 0
    assert problem(operation, 4, 0) != problem(operation, 4, 1)
    with pytest.raises(ValueError):
        problem(operation, MAX_DIGITS + 1, 0)


def test_prompt_ends_with_the_question_and_examples_are_solved():
    p = problem("add", 3, 0)
    prompt = prompt_for(p)
    lines = prompt.split("\n")
    assert lines[-1] == f"{p.a} + {p.b} = " and len(lines) == 4
    for line in lines[:-1]:
        left, right = line.split(" = ")
        a, b = left.split(" + ")
        assert int(a) + int(b) == int(right) and len(a) == 3


def test_every_digit_is_one_token(lm):
    ids = token_ids(lm, "9081726354")
    assert decode_each(lm, ids) == list("9081726354")


def test_teacher_forced_probabilities_are_the_models(lm):
    p = problem("add", 2, 1)
    s = score(lm, p)
    prompt_ids = token_ids(lm, s.prompt)
    answer = [token_ids(lm, d)[0] for d in str(p.answer)]
    assert list(s.answer_ids) == answer
    with torch.inference_mode():
        logits = lm.model(torch.tensor([prompt_ids + answer])).logits[0].float()
    probs = torch.softmax(logits, dim=-1)
    expected = [float(probs[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(answer)]
    np.testing.assert_allclose(s.token_probs, expected, rtol=1e-4)
    assert s.exact_probability == pytest.approx(np.prod(expected), rel=1e-4)
    top = [int(probs[len(prompt_ids) - 1 + i].argmax()) for i in range(len(answer))]
    np.testing.assert_array_equal(s.top_correct, np.array(top) == np.array(answer))
    row = summarize(2, [s, s])
    assert row.exact_probability == pytest.approx(s.exact_probability) and row.problems == 2


def test_charts():
    fig = answer_tokens(["1", "<b>"], [0.9, 0.2], ["1", "7"])
    assert list(fig.data[0].y) == [0.9, 0.2] and fig.data[0].marker.color[0] != fig.data[0].marker.color[1]
    fig = two_metrics([1, 2], [0.5, 0.4], [0.5, 0.5], [0.3, 0.0], [0.0, 0.0], [0.25, 0.1], log_y=True)
    assert len(fig.data) == 5 and np.isnan(fig.data[2].y[1])
    fig = power_curves([1, 6], 0.5)
    np.testing.assert_allclose(fig.data[1].y, np.linspace(0, 1, 201) ** 6)
