"""The pretraining page: the reader's text as shifted (input, target) pairs with SmolLM2's live loss, a baby GPT
trained from scratch whose loss starts near ln V and falls, and the tokens-per-parameter map."""
import math
from dataclasses import replace

import numpy as np
import pytest

from engine.decoding.loss import token_losses
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.training.corpus import load_corpus
from engine.training.lab import RunConfig, train
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text

DEFAULT_TEXT = "Pretraining needs no labels: every word of a text is the answer to the words that came before it."


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def test_every_target_is_the_next_input_and_the_losses_are_the_models(lm):
    at = open_page("pretraining", {"train": "false"})
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT_TEXT)
    pairs = at.dataframe[0].value
    assert len(pairs) == len(ids) - 1
    inputs, targets = list(pairs["input (last token seen)"]), list(pairs["target (next token)"])
    assert targets[:-1] == inputs[1:]                        # every target is the next row's input
    assert list(pairs["target id"]) == ids[1:]
    texts = decode_each(lm, ids)
    assert inputs == [visible(t) for t in texts[:-1]] and targets == [visible(t) for t in texts[1:]]
    expected = token_losses(lm, ids)
    np.testing.assert_allclose(pairs["loss (nats)"], expected.nll, rtol=1e-6)
    np.testing.assert_allclose(plotly_array(chart(at, "target_losses")["data"][0]["y"]), expected.nll, rtol=1e-6)
    assert metric(at, "Training examples").value == f"{len(ids) - 1:,}"
    assert metric(at, "SmolLM2's loss").value == f"{expected.mean_nll:.3f} nats"
    assert metric(at, "A model that knows nothing").value == f"{math.log(lm.card.vocab_size):.2f} nats"
    assert "Switch on **Train it live**" in shown_text(at)


def test_the_baby_gpt_starts_near_ln_v_and_ends_lower_for_the_default_seed(lm):
    at = open_page("pretraining", {"steps": "50"})
    assert_no_exception(at)
    run_until(at, lambda a: any(m.label.startswith("Validation loss after") for m in a.metric), timeout=300)
    assert_no_exception(at)
    run = train(replace(RunConfig(), steps=50))            # the same run, recomputed: a seed fixes it
    uniform = math.log(load_corpus().vocab_size)
    first, last = run.evals[0].val_loss, run.evals[-1].val_loss
    assert abs(first - uniform) < 0.1 and last < first - 0.5
    assert metric(at, "Loss at step 0").value == f"{first:.3f}"
    assert metric(at, "Validation loss after 50 steps").value == f"{last:.3f}"
    curve = chart(at, "pretrain_curve")["data"]
    np.testing.assert_allclose(plotly_array(curve[0]["y"]), [s.loss for s in run.steps], rtol=1e-6)
    np.testing.assert_allclose(plotly_array(curve[2]["y"]), [e.val_loss for e in run.evals], rtol=1e-6)
    shown = [c.value for c in at.code]
    assert run.config.sample_prompt + run.sample_before in shown and run.config.sample_prompt + run.sample_after in shown


def test_tokens_per_parameter_places_the_models(lm):
    at = open_page("pretraining", {"train": "false", "params": "70000", "tokens": "1400"})
    assert_no_exception(at)
    points = chart(at, "budget")["data"][-1]
    names = points["text"]
    params, tokens = plotly_array(points["x"]), plotly_array(points["y"])
    ratio = dict(zip(names, tokens / params))
    assert ratio["GPT-3"] == pytest.approx(300 / 175) and ratio["Chinchilla"] == pytest.approx(20)
    smol = names.index("SmolLM2-135M")
    assert params[smol] == lm.card.parameters and ratio["SmolLM2-135M"] == pytest.approx(2e12 / lm.card.parameters)
    assert ratio["your model"] == pytest.approx(20)
    assert metric(at, "Tokens per parameter").value == "20.0"
    baby = RunConfig()
    assert tokens[names.index("baby GPT (this page)")] == baby.steps * baby.batch_size * baby.shape.context


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "a"}, {"text": "🍓 emoji 日本語 <b>x</b> $y$ " * 40}, {"text": "ctrl \x00\x07\x1b[0m"},
    {"steps": "99999", "lr": "banana", "batch": "-3", "seed": "inf", "train": "maybe"},
    {"params": "1e400", "tokens": "nan"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("pretraining", params | {"train": params.get("train", "false")})
    assert_no_exception(at)
    assert at.get("plotly_chart") or at.info
