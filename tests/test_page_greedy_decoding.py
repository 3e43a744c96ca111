"""The greedy-decoding page: its steps are `generate`'s greedy tokens with the model's own probabilities, its
loops are real repeats, and beam search beside it finds a continuation at least as likely."""
import json
import math

import pytest

from engine.decoding.strategies import sequence_logprob
from engine.decoding.generation import generate, next_token_distribution
from engine.tokens.offsets import decode_each, token_ids, visible
from tests.pages import assert_no_exception, open_page, shown_text

DEFAULT = "The best way to learn a language is"


def metric(at, label):
    return next(m.value for m in at.metric if m.label.startswith(label))


def steps_chart(at):
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def test_defaults_show_generates_greedy_path_with_the_models_probabilities(lm):
    at = open_page("greedy-decoding")
    assert_no_exception(at)
    expected = generate(lm, DEFAULT, 20)
    chosen, runner_up = steps_chart(at)[:2]
    assert [c[0] for c in chosen["customdata"]] == [visible(t) for t in decode_each(lm, expected.new_ids)]
    assert chosen["y"] == pytest.approx([100 * p for p in expected.chosen_probabilities], rel=1e-4)
    first = next_token_distribution(lm, DEFAULT).probabilities
    assert runner_up["y"][0] == pytest.approx(100 * sorted(first)[-2], rel=1e-4)
    ids = token_ids(lm, DEFAULT)
    greedy_lp = sequence_logprob(lm, ids, expected.new_ids)
    assert metric(at, "Log-probability of the output") == f"{greedy_lp:.2f}"
    beam_lp = float(metric(at, "Beam search (4 beams)"))
    assert beam_lp >= float(f"{greedy_lp:.2f}")
    assert f"**{DEFAULT}**" in shown_text(at).replace("\\", "")


def test_share_link_to_a_loop_shows_the_repeated_block(lm):
    prompt = "I love you. I love you. I"
    at = open_page("greedy-decoding", {"prompt": prompt, "steps": "12"})
    assert_no_exception(at)
    new_ids = generate(lm, prompt, 12).new_ids
    assert len(steps_chart(at)[0]["y"]) == len(new_ids) == 12
    warning = " ".join(w.value for w in at.warning)
    assert "A repetition loop" in warning and "times in a row" in warning
    assert metric(at, "Distinct 2-grams") == f"{100 * len(set(zip(new_ids, new_ids[1:]))) / 11:.0f}%"
    assert math.isfinite(float(metric(at, "Greedy: log-probability")))


def test_empty_prompt_asks_for_one(lm):
    at = open_page("greedy-decoding", {"prompt": " "})
    assert_no_exception(at)
    assert "Type a prompt" in shown_text(at)
