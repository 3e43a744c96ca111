"""The beam-search page: its tree is the search's own, one beam is greedy, the best beam is at least as likely as
greedy's text, and the scores follow the length-penalty formula."""
import json

import pytest

from engine.decoding.strategies import sequence_logprob
from engine.decoding.generation import generate
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, shown_text

DEFAULT = "The best way to learn a language is"


def metric(at, label):
    return next(m.value for m in at.metric if m.label.startswith(label))


def tree_points(at):
    data = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    return {trace["name"]: trace for trace in data if trace.get("name")}


def test_defaults_grow_a_tree_whose_best_beam_beats_or_equals_greedy(lm):
    at = open_page("beam-search")
    assert_no_exception(at)
    points = tree_points(at)
    kept = len(points["kept beam"]["x"]) + len(points["chosen result"]["x"])
    assert len(points["chosen result"]["x"]) == 8          # the winning path, one node per step
    assert kept == 3 * 8                                   # 3 beams survive every step
    table = at.dataframe[0].value
    best = table[table["result"] == "best"].iloc[0]
    ids = token_ids(lm, DEFAULT)
    beam_lp, greedy_lp = (float(v) for v in metric(at, "Log-probability").split(" vs "))
    assert best["log-probability"] == pytest.approx(beam_lp, abs=0.006)
    assert greedy_lp == pytest.approx(sequence_logprob(lm, ids, generate(lm, DEFAULT, 8).new_ids), abs=0.006)
    assert beam_lp >= greedy_lp
    assert best["score"] == pytest.approx(best["log-probability"] / best["tokens"], rel=1e-6)


def test_share_link_with_one_beam_is_greedy(lm):
    prompt = "Here is a short poem about the sea:"
    at = open_page("beam-search", {"prompt": prompt, "width": "1", "steps": "6", "lp": "0"})
    assert_no_exception(at)
    greedy = generate(lm, prompt, 6)
    assert "it is greedy decoding, token for token" in shown_text(at)
    table = at.dataframe[0].value
    assert table.iloc[0]["text"] == greedy.new_text
    assert len(set(metric(at, "Log-probability").split(" vs "))) == 1
    assert table.iloc[0]["score"] == pytest.approx(table.iloc[0]["log-probability"])   # length penalty 0
