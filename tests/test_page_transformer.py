"""The transformer page: the traced logits equal the model's own forward, the stage parameter counts add up to the
model's total, each stage shows the pass's real values, and taking blocks out is measured; share links, reshaping
without a pass, and odd input."""
import json
import re

import numpy as np
import pytest

import engine.model.architecture
from engine.model.architecture import block_interventions, outcome
from engine.model.forward import forward
from engine.inside.norms import rms
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.model.traced import trace
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text
from ui.text import large_number

DEFAULT_TEXT = "The Eiffel Tower is in Paris, and the Colosseum is in"


def chart(at, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def check_prediction(lm, at, text: str) -> None:
    """The success line: the traced prediction and the gap to the model's own forward (lm.model)."""
    ids = token_ids(lm, text)
    own = forward(lm, ids).logits
    message = next(s.value for s in at.success if "The traced pass predicts" in s.value)
    assert visible(decode_each(lm, [int(np.argmax(own[-1]))])[0]) in message
    gap = float(re.search(r"to within ([0-9.e+-]+) over all", message).group(1))
    assert gap < 1e-3
    assert f"all {len(ids)} × 49,152" in message


def test_defaults(lm):
    at = open_page("transformer")
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT_TEXT)
    check_prediction(lm, at, DEFAULT_TEXT)
    assert at.slider(key="block").value == 6 and at.selectbox(key="stage").value == "attention"

    # the parameter split adds up to the model's own count, read from its parameters
    total = sum(p.numel() for p in lm.model.parameters())
    assert total == 134_515_008
    assert any(f"add up to {total:,}" in s.value for s in at.success)
    bars = chart(at, "params")["data"][0]
    assert sum(plotly_array(bars["x"])) * 1e6 == pytest.approx(total, abs=1)
    assert metric(at, "Attention per block").value == f"{sum(p.numel() for n, p in lm.model.named_parameters() if n.startswith('model.layers.0.self_attn')):,}"
    assert metric(at, "FFN per block").value == f"{sum(p.numel() for n, p in lm.model.named_parameters() if n.startswith('model.layers.0.mlp')):,}"

    # the glimpse is block 6's attention at the last token, from the pass
    tp = trace(lm, ids, record={"probs", "resid_out"}, layers=[5])
    z = plotly_array(chart(at, "glimpse")["data"][0]["z"])
    np.testing.assert_allclose(z, tp.at("probs", 5)[:, -1, :], atol=1e-4)
    # the token's path: its RMS after the block equals the stream's
    table = at.dataframe[0].value
    assert len(table) == 12
    after = table[table["stage"] == "Add to the stream"]["its RMS"].iloc[-1]
    assert after == pytest.approx(float(rms(tp.at("resid_out", 5)[-1])), rel=1e-5)

    # the experiment: block 2 taken out, measured on the text
    assert at.multiselect(key="skip").value == [2]
    intact = outcome(lm, ids, block_interventions())
    changed = outcome(lm, ids, block_interventions(frozenset({1})))
    assert metric(at, "Perplexity, intact").value == large_number(intact.perplexity)
    assert metric(at, "Perplexity, changed").value == large_number(changed.perplexity)
    assert changed.perplexity > 5 * intact.perplexity
    assert metric(at, "Next token now").value == visible(decode_each(lm, [int(np.argmax(changed.next_probs))])[0])
    losses = chart(at, "skip_losses")["data"]
    np.testing.assert_allclose(plotly_array(losses[1]["y"]), np.maximum(changed.token_nll, 1e-3), rtol=1e-5)


def test_share_link_state(lm):
    text = "Once upon a time there was a small red fox"
    at = open_page("transformer", {"text": text, "block": "1", "token": "3", "stage": "Q, K, V projections",
                                   "skip": ["15", "16"], "keep": "20"})
    assert_no_exception(at)
    assert at.selectbox(key="stage").value == "qkv" and at.slider(key="keep").value == 20
    assert at.multiselect(key="skip").value == [15, 16]
    check_prediction(lm, at, text)
    ids = token_ids(lm, text)
    tp = trace(lm, ids, record={"q", "k", "v"}, layers=[0])
    z = plotly_array(chart(at, "glimpse")["data"][0]["z"])
    expected = np.concatenate([tp.at("q", 0)[:, 2], tp.at("k", 0)[:, 2], tp.at("v", 0)[:, 2]])
    np.testing.assert_allclose(z, expected, atol=1e-4)
    assert "9 query heads" in shown_text(at)
    changed = outcome(lm, ids, block_interventions(frozenset({14, 15}), 20))
    assert metric(at, "Perplexity, changed").value == large_number(changed.perplexity)


def test_stage_and_token_changes_run_no_pass(lm, monkeypatch):
    at = open_page("transformer")

    def no_pass(*args, **kwargs):
        raise AssertionError("a forward pass ran")
    monkeypatch.setattr(engine.model.architecture, "trace", no_pass)
    for stage in ("ffn", "lm_head", "embedding", "rope"):
        at.selectbox(key="stage").set_value(stage).run()
        assert_no_exception(at)
    at.slider(key="token").set_value(2).run()
    assert_no_exception(at)
    assert "RoPE · block 6 of 30" in shown_text(at)


@pytest.mark.parametrize("params", [{"text": ""}, {"text": "Hi"}, {"skip": ["99", "x"], "keep": "0", "stage": "zz"}])
def test_odd_input(lm, params):
    at = open_page("transformer", params)
    assert_no_exception(at)
    if params.get("text") == "":
        assert "Type a sentence" in shown_text(at)
    elif params.get("text") == "Hi":
        assert "Add a word or two" in shown_text(at)
    else:
        assert at.selectbox(key="stage").value == "attention"
        check_prediction(lm, at, DEFAULT_TEXT)
