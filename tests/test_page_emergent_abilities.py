"""The emergent-abilities page: the one problem's per-token probabilities are the model's (recomputed here with a
plain forward pass), the exact-match probability shown is their product, and the k = 1..6 chart shows the
sweep's averages, with exact match falling much faster than the per-token score."""
import numpy as np
import pytest
import torch

from engine.tokens.offsets import token_ids
from engine.training.emergence import problem, prompt_for
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until


def metric(at, start):
    return next(m for m in at.metric if m.label.startswith(start))


def teacher_forced(lm, operation, k, index):
    p = problem(operation, k, index)
    prompt_ids = token_ids(lm, prompt_for(p))
    answer = token_ids(lm, str(p.answer))
    with torch.inference_mode():
        probs = torch.softmax(lm.model(torch.tensor([prompt_ids + answer])).logits[0].float(), dim=-1)
    return p, [float(probs[len(prompt_ids) - 1 + i, t]) for i, t in enumerate(answer)]


@pytest.mark.parametrize("params, operation, k, index", [
    ({}, "add", 3, 0),
    ({"op": "× one digit", "k": "5", "n": "3"}, "mul", 5, 2),
])
def test_exact_match_is_the_product_of_the_probabilities_shown(lm, params, operation, k, index):
    at = open_page("emergent-abilities", params | {"per": "2"})
    assert_no_exception(at)
    table = at.dataframe[0].value
    shown = table["P(correct)"].to_numpy(dtype=float)
    bars = plotly_array(chart(at, "one_chart")["data"][0]["y"])
    np.testing.assert_allclose(bars, shown, rtol=1e-9)
    assert metric(at, "Exact-match probability").value == f"{np.prod(shown):.3g}"      # the check
    assert metric(at, "Mean per-token probability").value == f"{np.mean(shown):.4f}"
    p, expected = teacher_forced(lm, operation, k, index)
    np.testing.assert_allclose(shown, expected, rtol=1e-4)
    assert "".join(table["correct digit"]) == str(p.answer)
    assert str(p.answer) in at.code[0].value


def test_the_sweep_chart_shows_a_cliff_for_exact_match_and_a_slope_per_token(lm):
    at = open_page("emergent-abilities", {"per": "2"})
    run_until(at, lambda a: any(m.label.startswith("Exact match at k") for m in a.metric), timeout=400)
    assert_no_exception(at)
    data = chart(at, "metrics_chart")["data"]
    per_token, exact = plotly_array(data[0]["y"]), plotly_array(data[2]["y"])
    assert list(plotly_array(data[0]["x"])) == [1, 2, 3, 4, 5, 6]
    # recompute k = 6 independently: the mean over its 2 problems of the product of teacher-forced probabilities
    six = [teacher_forced(lm, "add", 6, i)[1] for i in range(2)]
    assert exact[-1] == pytest.approx(np.mean([np.prod(s) for s in six]), rel=1e-3)
    assert per_token[-1] == pytest.approx(np.mean([np.mean(s) for s in six]), rel=1e-3)
    assert exact[-1] / exact[0] < per_token[-1] / per_token[0] / 10    # the cliff: exact match falls far faster
    assert np.all(exact <= per_token + 1e-12)


@pytest.mark.parametrize("params", [
    {"op": "<script>", "k": "99", "n": "1e400", "per": "-1", "log": "maybe"},
    {"op": "", "k": "nan", "n": "-5"},
])
def test_bad_links_fall_back(lm, params):
    at = open_page("emergent-abilities", params | {"per": "2"})
    assert_no_exception(at)
    assert chart(at, "one_chart")
