"""The residual-stream page: the lens after the last block equals the model's own prediction, a token's probability
through the blocks comes from the lens, the attribution adds up to the logit, and the exit-layer perplexities
(measured by early-exit passes, in a job) are those the engine measures; share links and odd input hold up."""
import json
import re

import numpy as np
import pytest

import engine.inside.residual
from engine.model.forward import forward
from engine.model.perplexity import perplexity
from engine.inside.residual import softmax
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.model.traced import Interventions, trace
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from ui.text import large_number

DEFAULT_TEXT = "The Eiffel Tower is in Paris, and the Colosseum is in"


def chart(at, key: str) -> dict | None:
    return next((json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")), None)


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def finished(at) -> bool:
    return chart(at, "exit_curve") is not None


def check_lens_and_model(lm, at, text: str) -> None:
    ids = token_ids(lm, text)
    own = softmax(forward(lm, ids).logits[-1])
    top = int(np.argmax(own))
    message = next(s.value for s in at.success if "the lens **is** the model" in s.value)
    assert visible(decode_each(lm, [top])[0]) in message
    assert f"at {100 * own[top]:.2f}%" in message
    assert float(re.search(r"over all 49,152 tokens is ([0-9.e+-]+)", message).group(1)) < 1e-4


def test_defaults(lm):
    at = run_until(open_page("residual-stream"), finished, pause=1.0)
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT_TEXT)
    check_lens_and_model(lm, at, DEFAULT_TEXT)

    # the followed token (the model's favourite) through the blocks, from the lens at the last position
    own = forward(lm, ids).logits
    top = int(np.argmax(own[-1]))
    assert at.selectbox(key="follow").value == visible(decode_each(lm, [top])[0])
    tp = trace(lm, ids, record={"logit_lens_last"})
    lens = softmax(tp.lens.last_logits)
    path = chart(at, "trajectory")["data"]
    np.testing.assert_allclose(plotly_array(path[0]["y"]), 100 * lens[:, top], atol=1e-4)
    assert plotly_array(path[1]["y"])[-1] == 1                                   # rank 1 after the last block
    assert metric(at, "Probability after block 30").value == f"{100 * lens[-1, top]:.1f}%"

    # the grid's last row is the model's own argmax at every position, with its probability
    grid = chart(at, "grid")["data"][0]
    np.testing.assert_allclose(plotly_array(grid["z"])[-1], softmax(own).max(-1), atol=1e-4)

    # direct logit attribution adds up to the model's logit
    assert metric(at, "Sum of all parts").delta == f"model: {own[-1, top]:.3f}"
    assert abs(float(metric(at, "Sum of all parts").value) - own[-1, top]) < 2e-3

    # early exit: the metric and the curve are early-exit passes, scored on the whole text
    exit_after = at.slider(key="exit").value
    early = perplexity(lm, ids, Interventions(exit_layer=exit_after)).perplexity
    assert metric(at, f"Exit after {exit_after}").value == large_number(early)
    curve = chart(at, "exit_curve")["data"][0]
    assert list(curve["x"]) == list(range(31))
    ys = plotly_array(curve["y"])
    for layer in (0, 12, 29):
        assert ys[layer] == pytest.approx(perplexity(lm, ids, Interventions(exit_layer=layer)).perplexity, rel=1e-9)
    assert ys[30] == pytest.approx(perplexity(lm, ids).perplexity) and ys[30] < ys[20]


def test_share_link_state(lm):
    text = "Water boils at one hundred"
    ids = token_ids(lm, text)
    own = forward(lm, ids).logits[-1]
    first, second = (int(i) for i in np.argsort(-own)[:2])
    follow, rival = (visible(decode_each(lm, [i])[0]) for i in (second, first))
    at = run_until(open_page("residual-stream", {"text": text, "token": "2", "follow": follow, "versus": rival,
                                                 "exit": "10"}), finished, pause=1.0)
    assert_no_exception(at)
    assert at.selectbox(key="follow").value == follow and at.selectbox(key="versus").value == rival
    assert at.slider(key="token").value == 2 and at.slider(key="exit").value == 10
    check_lens_and_model(lm, at, text)
    assert metric(at, "Sum of all parts").delta == f"model: {own[second] - own[first]:.3f}"   # a logit difference
    early = perplexity(lm, ids, Interventions(exit_layer=10))
    assert metric(at, "Exit after 10").value == large_number(early.perplexity)
    tp = trace(lm, ids, record={"resid_out"})
    growth = chart(at, "growth")["data"]
    np.testing.assert_allclose(plotly_array(growth[2]["y"])[1:],
                               np.sqrt((tp["resid_out"][:, 1].astype(np.float64) ** 2).mean(-1)), rtol=1e-5)


def test_following_another_token_runs_no_pass(lm, monkeypatch):
    at = run_until(open_page("residual-stream"), finished, pause=1.0)
    options = at.selectbox(key="follow").options

    def no_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran")
    monkeypatch.setattr(engine.inside.residual, "trace", no_pass)
    at.selectbox(key="follow").set_value(options[1]).run()
    at.slider(key="token").set_value(3).run()
    assert_no_exception(at)
    assert at.selectbox(key="follow").value == options[1]


@pytest.mark.parametrize("params", [{"text": ""}, {"text": "Hi"}, {"follow": "not-a-token", "versus": "zzz"}])
def test_odd_input(lm, params):
    at = open_page("residual-stream", params)
    assert_no_exception(at)
    if params.get("text") == "":
        assert "Type the start of a sentence" in shown_text(at)
    elif params.get("text") == "Hi":
        assert "Perplexity needs at least two tokens" in shown_text(at)
    else:
        assert at.selectbox(key="follow").value == at.selectbox(key="follow").options[0]
