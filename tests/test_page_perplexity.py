"""The perplexity page: exp(mean loss) of the model's own losses, shuffled words scoring worse, and the
sliding-window sweep reproducing the engine's passes."""
import json
import math

import numpy as np
import pytest
import torch

from engine.decoding.loss import shuffle_words, sliding_window_perplexity
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, run_until, shown_text

DEFAULT = ("Once upon a time, a little girl lived with her mother in a small house at the edge of a forest. "
           "Every morning she walked to the village to buy bread, and every evening she came home before dark.")


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def chart(at, title):
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if title in c.proto.spec)


def has_sweep(at):
    return any("Perplexity against stride" in c.proto.spec for c in at.get("plotly_chart"))


def model_perplexity(lm, text):
    ids = token_ids(lm, text)
    with torch.inference_mode():
        return math.exp(lm.model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item())


def test_defaults_show_the_models_perplexity_and_shuffling_hurts(lm):
    at = open_page("perplexity")
    assert_no_exception(at)
    assert metric(at, "Perplexity") == f"{model_perplexity(lm, DEFAULT):,.2f}"
    assert metric(at, "Uniform-guess perplexity") == f"{lm.model.config.vocab_size:,}"
    bars = chart(at, "Perplexity of each text")["data"][0]
    shown = dict(zip(bars["y"], bars["x"]))
    assert shown["Your text"] == pytest.approx(model_perplexity(lm, DEFAULT), rel=1e-4)
    assert shown["Your words, shuffled"] == pytest.approx(model_perplexity(lm, shuffle_words(DEFAULT, 0)), rel=1e-4)
    assert shown["Your words, shuffled"] > 2 * shown["Your text"]
    assert shown["Random characters"] > shown["English prose"]


def test_share_link_with_window_and_stride_reproduces_the_sweep(lm):
    text = "The museum opens at nine in the morning and closes at five in the afternoon every day of the week."
    at = open_page("perplexity", {"text": text, "window": "8", "stride": "2", "seed": "5"})
    assert_no_exception(at)
    run_until(at, has_sweep)
    assert_no_exception(at)
    ids = token_ids(lm, text)
    expected = sliding_window_perplexity(lm, ids, 8, 2)
    assert metric(at, "Perplexity, stride 2") == f"{expected.perplexity:,.2f}"
    assert metric(at, "Forward passes") == f"{expected.passes:,}"
    curve = chart(at, "Perplexity against stride")["data"][0]
    assert curve["x"] == [1, 2, 4, 7]
    assert curve["y"][0] < curve["y"][-1]          # more overlap, more context, lower perplexity
    bars = chart(at, "Perplexity of each text")["data"][0]
    assert dict(zip(bars["y"], bars["x"]))["Your words, shuffled"] == pytest.approx(
        model_perplexity(lm, shuffle_words(text, 5)), rel=1e-4)


@pytest.mark.parametrize("params, hint", [({"text": ""}, "Type a few sentences"), ({"text": "Hi"}, "single token"),
                                          ({"window": "7", "stride": "banana"}, "Perplexity")])
def test_odd_inputs_are_handled(lm, params, hint):
    at = open_page("perplexity", params)
    assert_no_exception(at)
    assert hint in shown_text(at)
