"""The dropout page: with dropout off repeated passes of SmolLM2 are identical, with it on they differ (and the
shown numbers are recomputed from the traced passes); the two baby-GPT runs' validation - train gaps are the
runs' own, recomputed from the same seeded configs."""
import json
from dataclasses import replace

import numpy as np
import pytest

from engine.tokens.offsets import token_ids
from engine.training.dropout import config_dropout, dropout_spread
from engine.training.lab import RunConfig, train
from tests.pages import assert_no_exception, open_page, plotly_array, run_until

PROMPT = "The capital of France is"


def chart(at, key):
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")


def metric(at, label):
    return next(m for m in at.metric if m.label == label)


def test_passes_are_identical_with_dropout_off_and_differ_with_it_on(lm):
    ids = token_ids(lm, PROMPT)
    off = open_page("dropout", {"train": "false", "p": "0.0", "passes": "3"})
    assert_no_exception(off)
    assert metric(off, "Passes identical?").value == "yes"
    assert metric(off, "Largest probability spread").value == "0.000"
    dots = [plotly_array(t["y"]) for t in chart(off, "passes_chart")["data"][1:]]
    assert len(dots) == 3 and all(np.array_equal(d, dots[0]) for d in dots)
    clean = plotly_array(chart(off, "passes_chart")["data"][0]["y"])
    np.testing.assert_allclose(dots[0], clean, rtol=1e-6)

    on = open_page("dropout", {"train": "false", "p": "0.2", "passes": "3"})
    assert_no_exception(on)
    assert metric(on, "Passes identical?").value == "no"
    expected = dropout_spread(lm, ids, 0.2, 3, 0)
    assert metric(on, "Largest probability spread").value == f"{expected.max_spread:.3f}"
    assert expected.max_spread > 0.01
    dots = [plotly_array(t["y"]) for t in chart(on, "passes_chart")["data"][1:]]
    assert not np.array_equal(dots[0], dots[1])
    declared = config_dropout(lm)
    assert declared["attention_dropout"] == lm.model.config.attention_dropout
    assert any(f"`attention_dropout` = {declared['attention_dropout']:g}" in m.value for m in on.markdown)


def test_the_runs_gaps_are_reported(lm):
    params = {"steps": "50", "chars": "1000", "rate": "0.3", "decay": "0.3", "p": "0.0", "passes": "2"}
    at = open_page("dropout", params)
    assert_no_exception(at)
    run_until(at, lambda a: any(m.label.startswith("Run 2: validation") for m in a.metric), timeout=300)
    assert_no_exception(at)
    base = RunConfig(steps=50, train_chars=1000, weight_decay=0.0, dropout=0.0)
    for i, cfg in enumerate((base, replace(base, weight_decay=0.3, dropout=0.3))):
        run = train(cfg)
        gap = run.last.val_loss - run.last.train_loss
        assert metric(at, f"Run {i + 1}: validation − train gap").value == f"{gap:+.3f}"
    lines = chart(at, "runs_chart")["data"]
    assert len(lines) == 4


@pytest.mark.parametrize("params", [{"prompt": ""}, {"prompt": "🍓 <b>x</b> $y$ \x00" * 30},
                                    {"p": "banana", "passes": "999", "rate": "-1", "steps": "1e400", "train": "x"}])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("dropout", params | {"train": "false"})
    assert_no_exception(at)
    assert at.get("plotly_chart") or at.info
