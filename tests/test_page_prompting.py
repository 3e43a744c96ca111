"""The prompting page shows the model's own answer scores, accuracies that are the counts of its own tables, a
sweep and a vote that match what they summarise; its link restores its state; bad links never break it."""
import json

import numpy as np
import pytest

import engine.using.prompting
import ui.prompting
from engine.using.chat_template import chat_messages, render
from engine.decoding.generation import generate
from engine.using.prompting import (CONTENT_FREE, DIRECT_SUFFIX, build_prompt, choice_ids, choose_demonstrations,
                              final_number, load_questions, load_tasks, majority_vote)
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from tests.test_prompting import plain_logprobs

DEFAULT_TEXT = "The pasta arrived cold, but the dessert almost made up for it."


def chart(at, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, [c.proto.id for c in at.get("plotly_chart")]
    return json.loads(found[0].proto.spec)


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def tables_ready(at) -> bool:
    """Both per-item tables are shown (they are the only tables with a 'true label' column)."""
    return sum("true label" in d.value.columns for d in at.dataframe) >= 2


def expected_scores(lm, task, verbalizer, k, seed, text, per_token=False):
    """Each answer's score recomputed with plain forward passes (no cache, no engine scoring code)."""
    words = task.words(verbalizer)
    prompt = token_ids(lm, build_prompt(task, words, choose_demonstrations(task, k, seed), text))
    sums = [sum(plain_logprobs(lm, prompt, c)) / (len(c) if per_token else 1) for c in choice_ids(lm, words)]
    return np.array(sums)


def check_table(at, lm, table, task, verbalizer, k, seed, rows, per_token=False, calibrated=False):
    """The table's scores are the model's; its predictions follow from them; the accuracy shown is its count."""
    words = task.words(verbalizer)
    scores = table[[f"score: {w}" for w in words]].to_numpy()
    if calibrated:
        scores = scores - expected_scores(lm, task, verbalizer, k, seed, CONTENT_FREE, per_token)
        np.testing.assert_allclose(table[[f"calibrated: {w}" for w in words]].to_numpy(dtype=float), scores,
                                   atol=2e-3)
    predicted = [task.labels[i] for i in scores.argmax(1)]
    assert list(table["predicted"]) == predicted
    assert list(table["correct"]) == [p == t for p, t in zip(predicted, table["true label"])]
    assert list(table["true label"]) == [e.label for e in task.test]
    for row in rows:
        np.testing.assert_allclose(table.iloc[row][[f"score: {w}" for w in words]].to_numpy(dtype=float),
                                   expected_scores(lm, task, verbalizer, k, seed, task.test[row].text, per_token),
                                   atol=2e-3)
    return int(table["correct"].sum()), len(table)


def test_defaults_show_the_models_scores_and_accuracy_from_its_own_table(lm):
    at = open_page("prompting")
    assert_no_exception(at)
    task = load_tasks()["sentiment"]
    assert (at.selectbox(key="task").value, at.slider(key="k").value, at.radio(key="score").value) == \
        ("sentiment", 4, "summed")
    zero, few = chart(at, "choices_chart")["data"]
    for trace, k in ((zero, 0), (few, 4)):
        expected = expected_scores(lm, task, "positive / negative", k, 0, DEFAULT_TEXT)
        np.testing.assert_allclose([float(c[0]) for c in trace["customdata"]], expected, atol=2e-3)
        shares = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
        np.testing.assert_allclose(plotly_array(trace["y"]) / 100, shares, atol=1e-3)
        shown_answer = metric(at, "Zero-shot answer" if k == 0 else "4-shot answer").value
        assert shown_answer == task.words("positive / negative")[int(np.argmax(expected))]

    run_until(at, tables_ready)
    assert_no_exception(at)
    names = ("Zero-shot accuracy", "4-shot accuracy")
    for table, name, k, rows in zip(at.dataframe, names, (0, 4), ((0, 23), (1, 22))):
        correct, total = check_table(at, lm, table.value, task, "positive / negative", k, 0, rows)
        assert metric(at, name).value == f"{100 * correct / total:.1f}%"
        assert metric(at, name).delta == f"{correct} of {total} right"
    bars = chart(at, "accuracy_chart")["data"][0]
    shown = [float(metric(at, n).value.rstrip("%")) for n in names]
    np.testing.assert_allclose(plotly_array(bars["y"]), shown, atol=0.05)
    assert "Switch on **Sweep" in shown_text(at) and "Switch on **Generate**" in shown_text(at)


def test_share_link_restores_per_token_scoring_and_calibration(lm):
    text = "Slow service, though the view was lovely."
    verbalizer = "loved it / hated it"                     # two tokens each: per-token halves the sum
    at = open_page("prompting", {"words-sentiment": verbalizer, "k": "2", "seed": "3", "score": "per token",
                                 "calibrate": "true", "text": text})
    assert_no_exception(at)
    assert at.selectbox(key="words-sentiment").value == verbalizer and at.slider(key="k").value == 2
    assert at.number_input(key="seed").value == 3 and at.toggle(key="calibrate").value
    assert at.text_input(key="text").value == text
    task = load_tasks()["sentiment"]
    few = chart(at, "choices_chart")["data"][1]
    np.testing.assert_allclose([float(c[0]) for c in few["customdata"]],
                               expected_scores(lm, task, verbalizer, 2, 3, text, per_token=True), atol=2e-3)
    run_until(at, tables_ready)
    assert_no_exception(at)
    correct, total = check_table(at, lm, at.dataframe[1].value, task, verbalizer, 2, 3, (0,), per_token=True,
                                 calibrated=True)
    assert metric(at, "2-shot accuracy").value == f"{100 * correct / total:.1f}%"
    assert "'N/A'" in shown_text(at)


def test_reshaping_controls_run_no_model(monkeypatch):
    at = run_until(open_page("prompting"), tables_ready)
    before = at.dataframe[1].value.copy()

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran on a control that only reshapes results")
    monkeypatch.setattr(engine.using.prompting, "score_prompts", no_model)
    monkeypatch.setattr(ui.prompting, "score_condition", no_model)
    monkeypatch.setattr(ui.prompting, "score_text", no_model)
    at.radio(key="score").set_value("per token").run()
    at.toggle(key="calibrate").set_value(True).run()
    assert_no_exception(at)
    after = at.dataframe[1].value
    np.testing.assert_allclose(after["score: positive"], before["score: positive"], atol=1e-3)  # one token each
    assert "calibrated" in json.dumps(chart(at, "accuracy_chart"))


def test_the_sweep_agrees_with_the_set_scores(lm, monkeypatch):
    monkeypatch.setattr(ui.prompting, "SWEEP_SHOTS", (0, 4))
    monkeypatch.setattr(ui.prompting, "SWEEP_SEEDS", (0, 1))
    at = run_until(open_page("prompting", {"sweep": "true"}), lambda a: tables_ready(a) and any(
        c.proto.id.endswith("-sweep_chart") for c in a.get("plotly_chart")), timeout=600)
    assert_no_exception(at)
    dots = chart(at, "sweep_chart")["data"][1]              # one marker per (k, order)
    points = {(int(k), int(s)): y for (k, s), y in zip(plotly_array(dots["customdata"]), plotly_array(dots["y"]))}
    assert set(points) == {(0, 0), (4, 0), (4, 1)}
    for key, name in (((0, 0), "Zero-shot accuracy"), ((4, 0), "4-shot accuracy")):
        assert points[key] == pytest.approx(float(metric(at, name).value.rstrip("%")), abs=0.05)
    spread = abs(points[(4, 0)] - points[(4, 1)])
    assert metric(at, "Widest spread over orders").value == f"{spread:.0f} points"


def test_chain_of_thought_table_and_vote_match_the_replies(lm, monkeypatch):
    monkeypatch.setattr(ui.prompting, "REASONING_TOKENS", 24)
    question = load_questions()[1]
    at = run_until(open_page("prompting", {"reason": "true", "samples": "3", "question": question.text}),
                   lambda a: any("final number" in d.value.columns for d in a.dataframe), timeout=600)
    assert_no_exception(at)
    replies = next(d.value for d in at.dataframe if "final number" in d.value.columns)
    assert list(replies["reply"]) == ["direct", "step by step (greedy)"] + [f"step by step, sample {i}"
                                                                           for i in (1, 2, 3)]
    numbers = [None if n != n or n is None else int(n) for n in replies["final number"]]
    assert numbers == [final_number(t) for t in replies["text"]]
    assert at.selectbox(key="question").value == 1
    direct = generate(lm, render(lm, chat_messages("", question.text + DIRECT_SUFFIX)), 16).new_text.strip()
    assert replies["text"][0] == direct                   # the direct reply is the model's greedy reply
    vote, votes = majority_vote(numbers[2:])
    assert metric(at, "Majority of the samples").value == ("none" if vote is None else str(vote))
    assert list(replies["right"]) == [n == question.answer for n in numbers]
    assert "Wei et al." in shown_text(at)


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "🍓 emoji 日本語 <script>alert(1)</script> $x$ **b**"}, {"text": "a" * 5000},
    {"task": "nope", "k": "99", "seed": "abc", "score": "maybe", "calibrate": "perhaps"},
    {"task": "News topic", "words-topic": "nonsense"}, {"question": "17", "samples": "-4"},
])
def test_bad_links_never_show_a_traceback(lm, params):
    at = open_page("prompting", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text") == "":
        assert "Type a sentence above" in text
    else:
        assert at.get("plotly_chart")
    if params.get("task") == "News topic":
        assert at.selectbox(key="words-topic").value == "sports / science / business / politics"
    if "k" in params:
        assert 0 <= at.slider(key="k").value <= 8


def test_a_condition_being_scored_is_claimed_once_and_waited_for():
    import threading

    store = ui.prompting._ConditionStore(max_entries=2)
    assert store.claim("a") is None                        # the first asker owns it
    event = store.claim("a")
    assert isinstance(event, threading.Event) and not event.is_set()
    store.put("a", 1)
    store.release("a")
    assert event.is_set() and store.get("a") == 1 and store.claim("a") is None
    store.release("a")
    for key in "bcd":
        store.put(key, key)
    assert store.get("a") is None and store.get("d") == "d"   # bounded: the least recently used went first
