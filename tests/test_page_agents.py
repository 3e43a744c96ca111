"""The agents page draws the model's own first decision at once; a run stops within its bounds and names why; every
step's action is the one shown with the highest probability unless the reader forced it; the tool really ran."""
import re

import numpy as np

from concepts.catalogue import load_catalogue
from engine.using.agent import ACTIONS, STOP_REASONS, first_decision, start_messages, step_reserve
from engine.using.chat_template import render
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text

TITLES = {c.slug: c.title for c in load_catalogue().concepts}


def metric(at, label: str):
    found = [m for m in at.metric if m.label == label]
    return found[0] if found else None


def has_chart(at, key: str) -> bool:
    return any(c.proto.id.endswith(f"-{key}") for c in at.get("plotly_chart"))


def test_the_first_decision_is_drawn_at_once_and_is_the_models_own(lm):
    at = open_page("agents", {"thought": "0"})
    assert_no_exception(at)
    question = at.text_input(key="question").value
    expected = first_decision(lm, question, TITLES, 0)
    bars = chart(at, "first_chart")["data"][0]
    np.testing.assert_allclose(plotly_array(bars["x"]) / 100, expected.probabilities, atol=1e-3)
    assert metric(at, "Likeliest first action").value == expected.likeliest
    assert metric(at, "Context before acting").value == f"{expected.context_tokens:,} tokens"


def test_a_forced_run_stops_within_its_bounds_and_every_unforced_step_takes_the_top_action(lm):
    question = "What is 37 times 24?"
    at = open_page("agents", {"question": question, "thought": "0", "steps": "2", "force_step": "1",
                              "force_tool": "calculator"})
    assert_no_exception(at)
    run_until(at, lambda a: metric(a, "Stop reason") is not None, timeout=400)
    assert_no_exception(at)
    reason = metric(at, "Stop reason").value
    taken, limit = map(int, re.fullmatch(r"(\d+) of (\d+)", metric(at, "Steps taken").value).groups())
    assert reason in STOP_REASONS and limit == 2 and 1 <= taken <= 2
    assert (reason == "step limit") == (taken == 2 and metric(at, "Answer").value == "none")

    grid = chart(at, "decision_chart")["data"][0]
    shares, labels = plotly_array(grid["z"]), grid["text"]
    assert shares.shape == (taken, len(ACTIONS))
    np.testing.assert_allclose(shares.sum(axis=1), 100, atol=0.05)
    for row, texts in enumerate(labels):
        taken_at = [i for i, t in enumerate(texts) if "▶" in t]
        assert len(taken_at) == 1
        if row == 0:
            assert "forced" in texts[taken_at[0]] and ACTIONS[taken_at[0]] == "calculator"
        else:
            assert "forced" not in texts[taken_at[0]] and taken_at[0] == int(np.argmax(shares[row]))
    # step 1's probabilities are the model's first decision, recomputed here
    np.testing.assert_allclose(shares[0] / 100, first_decision(lm, question, TITLES, 0).probabilities, atol=1e-3)
    assert "Observation (the app ran the calculator): 888" in shown_text(at)

    budget = chart(at, "budget_chart")["data"]
    totals = plotly_array(budget[0]["x"]) + plotly_array(budget[1]["x"])
    start = len(token_ids(lm, render(lm, start_messages(question, TITLES, False))))
    assert totals[0] == start and np.all(np.diff(totals) > 0) and totals[-1] <= 1024
    assert metric(at, "Context used").value == f"{int(totals[-1]):,} of 1,024"


def test_a_budget_smaller_than_one_step_stops_at_once_and_says_so(lm):
    at = open_page("agents", {"thought": "0", "budget": "256"})
    run_until(at, lambda a: metric(a, "Stop reason") is not None, timeout=120)
    assert_no_exception(at)
    assert metric(at, "Stop reason").value == "token budget"
    assert metric(at, "Steps taken").value == "0 of 4"
    assert any("No step could start" in i.value for i in at.info)
    assert f"One step may add up to {step_reserve(0)} tokens" in shown_text(at)
