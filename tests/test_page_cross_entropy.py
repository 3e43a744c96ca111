"""The cross-entropy page shows the model's own per-token losses, whose mean is the model's loss on the text."""
import json
import math

import numpy as np
import pytest
import torch

from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text

DEFAULT = "The Eiffel Tower is in Paris. It was finished in 1889 and is one of the most visited monuments."


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def model_losses(lm, text):
    ids = token_ids(lm, text)
    with torch.inference_mode():
        out = lm.model(torch.tensor([ids]), labels=torch.tensor([ids]))
    nll = torch.nn.functional.cross_entropy(out.logits[0, :-1], torch.tensor(ids[1:]), reduction="none")
    return ids, nll.numpy(), out.loss.item()


def bars(at):
    chart = next(c for c in at.get("plotly_chart") if "Loss of every predicted token" in c.proto.spec)
    return json.loads(chart.proto.spec)["data"][0]


def test_defaults_show_the_models_own_loss_token_by_token(lm):
    at = open_page("cross-entropy")
    assert_no_exception(at)
    ids, nll, loss = model_losses(lm, DEFAULT)
    assert metric(at, "Cross-entropy (nats/token)") == f"{loss:.3f}"
    assert metric(at, "Uniform guess (nats/token)") == f"{math.log(lm.model.config.vocab_size):.2f}"
    assert metric(at, "Bits per byte") == f"{nll.sum() / math.log(2) / len(DEFAULT.encode()):.3f}"
    np.testing.assert_allclose(plotly_array(bars(at)["y"]), nll, rtol=1e-4, atol=1e-5)
    assert any("Checked: the mean of these" in s.value for s in at.success)
    # The formula is filled in for the most surprising token by default.
    t = int(np.argmax(nll))
    assert at.slider(key="pos").value == t + 1
    assert f"{nll[t]:.3f}\\ \\text{{nats}}" in at.latex[0].value


def test_share_link_in_bits_at_a_chosen_token(lm):
    text = "one two three four, one two three four, one two three four"
    at = open_page("cross-entropy", {"text": text, "unit": "bits", "pos": "3"})
    assert_no_exception(at)
    ids, nll, loss = model_losses(lm, text)
    assert metric(at, "Cross-entropy (bits/token)") == f"{loss / math.log(2):.3f}"
    np.testing.assert_allclose(plotly_array(bars(at)["y"]), nll / math.log(2), rtol=1e-4, atol=1e-5)
    assert f"{nll[2]:.3f}\\ \\text{{nats}}" in at.latex[0].value
    # The repeats are learned within the text: the last repetition costs far less than the first.
    third = len(nll) * 2 // 3
    assert nll[third:].mean() < nll[:third // 2].mean()


@pytest.mark.parametrize("params, hint", [({"text": ""}, "Type a sentence"), ({"text": "Hi"}, "single token")])
def test_texts_too_short_to_score_say_so(lm, params, hint):
    at = open_page("cross-entropy", params)
    assert_no_exception(at)
    assert hint in shown_text(at)
