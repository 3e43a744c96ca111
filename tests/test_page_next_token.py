"""The next-token page shows the model's own numbers, follows its share link, and survives bad input."""
import json

import pytest

from engine.decoding.generation import generate, next_token_distribution
from tests.pages import assert_no_exception, open_page, shown_text


def chart_rows(at):
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    bar = figure["data"][0]
    return [y.replace("\u200b", "") for y in bar["y"]], bar["x"]


def test_defaults_show_paris_with_the_models_probability(lm):
    at = open_page("next-token")
    assert_no_exception(at)
    labels, percents = chart_rows(at)
    assert len(labels) == 10
    assert labels[0] == "␣Paris"
    expected = next_token_distribution(lm, "The capital of France is").top(lm, 1)[0].probability
    assert percents[0] == pytest.approx(100 * expected, rel=1e-6)
    assert "Check yourself" in shown_text(at) or at.radio


def test_share_link_state_is_restored(lm):
    at = open_page("next-token", {"prompt": "Once upon a time", "k": "5", "greedy": "true", "greedy_len": "8"})
    assert_no_exception(at)
    assert at.text_area(key="prompt").value == "Once upon a time"
    labels, _ = chart_rows(at)
    assert len(labels) == 5
    greedy = generate(lm, "Once upon a time", 8).new_text
    assert any(("Once upon a time" + greedy) in t.value for t in at.text)


def test_clicking_a_token_appends_it(lm):
    at = open_page("next-token")
    at.button(key="append-0").click().run()
    assert at.text_area(key="prompt").value == "The capital of France is Paris"
    labels, _ = chart_rows(at)
    assert labels != ["␣Paris"] * len(labels)


@pytest.mark.parametrize("params", [
    {"prompt": ""}, {"prompt": "   "}, {"prompt": "a" * 100_000}, {"prompt": "🍓 emoji 日本語 العربية Ελληνικά"},
    {"prompt": "ctrl \x00\x07\x1b[0m chars"}, {"prompt": "<script>alert(1)</script>"},
    {"k": "banana", "greedy": "maybe", "greedy_len": "-5", "unknown": "x"}, {"k": "99999"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("next-token", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("prompt", "x").strip() == "":
        assert "Type a prompt" in text
    if len(params.get("prompt", "")) > 10_000:
        assert "Cut to the first" in text

