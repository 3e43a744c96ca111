"""The hallucination page: the per-token probabilities shown are the model's own, the semantic entropy shown is
the formula over the groups shown, the samples are `generate`'s seeded draws, and a share link restores it all."""
import json
import math
import time

import numpy as np
import pytest
import torch

import ui.hallucination
from engine.model.encoder import embed_sentences, load_encoder
from engine.decoding.generation import generate
from engine.decoding.semantic_entropy import (answer_core, cluster_sizes, greedy_answer, meaning_clusters, question_prompt,
                                     semantic_entropy_bits)
from engine.tokens.tokenizers import chat_prompt
from engine.tokens.offsets import decode_each, token_ids
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text

FRANCE, VORLANDIA = "What is the capital of France?", "What is the capital of the country Vorlandia?"
GOLD, ZORBIUM = "What is the chemical symbol for gold?", "What is the chemical symbol for the element zorbium?"
SHORT = " Answer in one short sentence."
LINK = {"qa": GOLD, "qb": ZORBIUM, "short": "true", "len": "8", "n": "3", "t": "1.0", "seed": "5",
        "compare": "New words only", "tau": "0.6"}   # a segmented control's link value is its label


def chart(at, key):
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def models_own_probabilities(lm, question: str, max_new_tokens: int) -> np.ndarray:
    """Recomputed without the page's engine: greedy reply by `generate`, then a plain forward pass and softmax."""
    prompt = chat_prompt(lm, question + SHORT)
    reply = [i for i in generate(lm, prompt, max_new_tokens).new_ids if i != lm.tokenizer.eos_token_id]
    ids = token_ids(lm, prompt)
    with torch.no_grad():
        probs = torch.softmax(lm.model(torch.tensor([ids + reply])).logits[0].double(), -1)
    return np.array([float(probs[len(ids) - 1 + k, t]) for k, t in enumerate(reply)])


def shown_groups(at) -> list[tuple[int, ...]]:
    """Group sizes per question, read from the stacked bars (trace g holds group g + 1 of every question)."""
    traces = chart(at, "groups_chart")["data"]
    per_question = np.array([plotly_array(t["x"]) for t in traces]).T
    return [tuple(int(x) for x in row if x > 0) for row in per_question]


def test_defaults_show_the_models_own_token_probabilities_at_once(lm):
    at = open_page("hallucination")
    assert_no_exception(at)
    bars = [t for t in chart(at, "confidence_chart")["data"] if t["type"] == "bar"]
    for bar, question, name in zip(bars, (FRANCE, VORLANDIA), "AB"):
        expected = models_own_probabilities(lm, question, 20)
        np.testing.assert_allclose(plotly_array(bar["y"]), 100 * expected, rtol=1e-6)
        assert metric(at, f"{name}: mean token confidence") == f"{100 * expected.mean():.0f}%"
    assert "Paris" in shown_text(at)                           # A's greedy answer is shown
    assert "answer sampling" in shown_text(at) or at.get("plotly_chart")   # the job was started (or is stored)


def test_share_link_restores_state_and_entropy_is_the_formula_over_the_groups_shown(lm):
    at = open_page("hallucination", LINK)
    assert_no_exception(at)
    assert at.text_input(key="qa").value == GOLD and at.text_input(key="qb").value == ZORBIUM
    assert at.slider(key="n").value == 3 and at.slider(key="len").value == 8
    assert at.slider(key="t").value == pytest.approx(1.0) and at.slider(key="tau").value == pytest.approx(0.6)
    assert at.number_input(key="seed").value == 5 and at.toggle(key="short").value
    assert at.segmented_control(key="compare").value == "new"
    run_until(at, lambda a: len(a.get("plotly_chart")) == 3)
    assert_no_exception(at)
    encoder = load_encoder()
    for question, sizes, name in zip((GOLD, ZORBIUM), shown_groups(at), "AB"):
        # the semantic entropy shown is -sum p log2 p over the group sizes shown
        p = np.array(sizes) / sum(sizes)
        assert metric(at, f"{name}: semantic entropy") == f"{float(-(p * np.log2(p)).sum()) + 0.0:.2f} bits"
        assert metric(at, f"{name}: meaning groups") == f"{len(sizes)} of 3"
        # same seed, same samples: answer i is generate's draw with seed 5 + i
        prompt = chat_prompt(lm, question + SHORT)
        texts = [generate(lm, prompt, 8, temperature=1.0, seed=5 + i).new_text.strip() for i in range(3)]
        shown = shown_text(at)
        assert all(" ".join(t.split()) in shown.replace("\\", "") for t in texts if t)
        cores = embed_sentences(encoder, [answer_core(question, t) for t in texts])
        assert shown_groups(at)["AB".index(name)] == cluster_sizes(meaning_clusters(cores @ cores.T, 0.6))
    assert math.isclose(semantic_entropy_bits([3]), 0.0)


def test_the_threshold_only_regroups_the_samples(lm, monkeypatch):
    at = run_until(open_page("hallucination", LINK), lambda a: len(a.get("plotly_chart")) == 3)

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran on a threshold move")
    monkeypatch.setattr(ui.hallucination, "sample_answers", no_model)
    monkeypatch.setattr(ui.hallucination, "greedy_answer", no_model)
    at.slider(key="tau").set_value(0.99)
    started = time.perf_counter()
    at.run()
    print(f"threshold move: {time.perf_counter() - started:.3f} s")
    assert_no_exception(at)
    for sizes, name in zip(shown_groups(at), "AB"):
        assert metric(at, f"{name}: semantic entropy") == f"{semantic_entropy_bits(sizes):.2f} bits"
        assert len(sizes) == int(metric(at, f"{name}: meaning groups").split()[0])
    at.segmented_control(key="compare").set_value("whole").run()
    assert_no_exception(at) and len(at.get("plotly_chart")) == 3


def test_a_preset_sets_both_questions():
    at = open_page("hallucination", {"len": "8"})   # the share-link test's length: its answers are cached
    at.button(key="preset-1").click().run()
    assert_no_exception(at)
    assert (at.text_input(key="qa").value, at.text_input(key="qb").value) == (GOLD, ZORBIUM)


@pytest.mark.parametrize("params", [
    {"qa": ""}, {"qb": "   "}, {"qa": "a" * 5000},
    {"qa": "🍓 日本語 العربية?", "qb": "<script>x</script> $x$ **b**"},
    {"n": "99", "len": "-3", "t": "nan", "seed": "abc", "compare": "nope", "tau": "7", "short": "maybe"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("hallucination", {"len": "8"} | params)   # short answers: the test is about the input
    assert_no_exception(at)
    if not all(params.get(k, "x").strip() for k in ("qa", "qb")):
        assert "Type a question in both boxes" in shown_text(at)
    else:
        assert at.get("plotly_chart")


def test_the_planets_claim_in_the_caption_holds(lm):
    """The page says: asked the Planets pair's real question, the model names a wrong planet above 50%."""
    answer = greedy_answer(lm, question_prompt(lm, "What is the largest planet in the Solar System?"), 20)
    texts = [t.strip() for t in decode_each(lm, list(answer.answer_ids))]
    planets = {"Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"}
    first = next(k for k, t in enumerate(texts) if t in planets)
    assert texts[first] != "Jupiter" and answer.probabilities[first] > 0.5
