"""The gradient-descent page: one real step on SmolLM2's last block lowers the loss on the sentence it was taken
on (numbers recomputed from the engine), the per-block gradients, the loss line through the step, a baby GPT."""

import numpy as np
import pytest

from engine.tokens.offsets import token_ids
from engine.training.smollm_step import gradient_steps, layer_gradients
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text

DEFAULT_TEXT = "My neighbour's dog is called Biscuit, and he barks at the postman every single morning."
DEFAULT_OTHER = "The capital of France is Paris, and the capital of Italy is Rome."
QUIET = {"train": "false"}   # the baby GPT's run is the pretraining page's default run; not needed here


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def test_one_small_step_lowers_the_loss_on_its_sentence(lm):
    at = open_page("gradient-descent", QUIET)
    assert_no_exception(at)
    ids, other = token_ids(lm, DEFAULT_TEXT), token_ids(lm, DEFAULT_OTHER)
    expected = gradient_steps(lm, ids, other, lr=0.01, steps=1)
    before, after = expected.losses
    assert after < before                                   # the check, on the engine's own numbers
    assert metric(at, "Loss on your sentence").value == f"{after:.3f}"
    assert f"was {before:.3f}" in metric(at, "Loss on your sentence").proto.delta
    assert metric(at, "Loss on the other sentence").value == f"{expected.other_losses[-1]:.3f}"
    assert metric(at, "Gradient norm").value == f"{expected.grad_norms[0]:.3f}"
    assert metric(at, "Predicted change").value == f"{expected.predicted_first_change:+.3f}"
    assert any("lowered the loss on your sentence" in s.value for s in at.success)
    bars = chart(at, "token_losses")["data"]
    np.testing.assert_allclose(plotly_array(bars[0]["y"]), expected.token_losses_before, rtol=1e-5)
    np.testing.assert_allclose(plotly_array(bars[1]["y"]), expected.token_losses_after, rtol=1e-5)

    grads = layer_gradients(lm, ids)
    per_block = chart(at, "layer_grads")["data"]
    np.testing.assert_allclose(plotly_array(per_block[0]["y"]), grads.attention, rtol=1e-4)
    np.testing.assert_allclose(plotly_array(per_block[1]["y"]), grads.ffn, rtol=1e-4)
    assert len(plotly_array(per_block[0]["y"])) == lm.card.layers

    run_until(at, lambda a: any(c.proto.id.endswith("-line") for c in a.get("plotly_chart")), timeout=300)
    line = chart(at, "line")["data"]
    step = next(t for t in line if t.get("name", "").startswith("your step"))
    assert step["x"] == [0.01] and step["y"][0] == pytest.approx(after, abs=1e-6)
    alphas, losses = plotly_array(line[0]["x"]), plotly_array(line[0]["y"])
    assert losses[list(alphas).index(0.0)] == pytest.approx(before, abs=1e-4)   # alpha = 0: the real weights


def test_share_link_with_several_steps_and_an_overshoot(lm):
    text, other = "Rain fell on the quiet harbour all night.", "Seven plus five is twelve."
    at = open_page("gradient-descent", QUIET | {"text": text, "other": other, "lr": "0.001", "steps": "3"})
    assert_no_exception(at)
    assert at.slider(key="steps").value == 3 and at.select_slider(key="lr").value == "0.001"
    expected = gradient_steps(lm, token_ids(lm, text), token_ids(lm, other), lr=0.001, steps=3)
    assert metric(at, "Loss on your sentence").value == f"{expected.losses[-1]:.3f}"
    assert expected.losses[-1] < expected.losses[0]
    assert "3 steps lowered the loss" in shown_text(at)

    big = open_page("gradient-descent", QUIET | {"lr": "1"})
    assert_no_exception(big)
    result = gradient_steps(lm, token_ids(lm, DEFAULT_TEXT), token_ids(lm, DEFAULT_OTHER), lr=1.0, steps=1)
    assert result.losses[1] > result.losses[0]                # too long a step overshoots the valley
    assert any("overshot" in w.value for w in big.warning)


def test_the_baby_gpt_section_trains_with_the_chosen_optimizer(lm):
    at = open_page("gradient-descent", {"opt": "SGD", "train_steps": "50"})
    assert_no_exception(at)
    run_until(at, lambda a: any(c.proto.id.endswith("-gd_curve") for c in a.get("plotly_chart")), timeout=300)
    spec = chart(at, "gd_curve")
    curve = spec["data"]
    assert spec["layout"]["title"]["text"].startswith("SGD at peak η = 1:")   # SGD's suggested rate, x1
    norms = plotly_array(curve[-1]["y"])
    assert curve[-1]["name"] == "gradient norm" and len(norms) == 50 and np.all(norms > 0)
    losses = plotly_array(curve[0]["y"])
    assert losses[-10:].mean() < losses[:5].mean() - 0.3


@pytest.mark.parametrize("params", [
    {"text": ""}, {"other": "   "}, {"text": "a"}, {"text": "🍓 <script>x</script> $y$ " * 50},
    {"lr": "banana", "steps": "99", "opt": "lion", "rate": "-1", "train_steps": "7", "plane": "maybe"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("gradient-descent", QUIET | params)
    assert_no_exception(at)
    assert at.get("plotly_chart") or at.info
