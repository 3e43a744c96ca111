"""The RAG page: the chunking it shows, the retrieved chunks are the top k by a recomputed cosine, and the answers
and the reference answer's probabilities equal the live model's, for the defaults and a share link."""
import json
import re

import numpy as np
import pytest

from engine.decoding.strategies import sequence_logprob
from engine.model.encoder import embed_sentences, load_encoder
from engine.decoding.generation import generate
from engine.retrieval.chunks import chunk_corpus, load_chunk_index, read_concept_files
from engine.retrieval.rag import contains_reference, rag_prompt
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, run_until, shown_text
from ui.rag import probability_text
from ui.text import escape_markdown

DEFAULT_Q, DEFAULT_REF = "What temperature range does OpenAI's API accept?", "0 to 2"


def chart(at, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def metric(at, start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(start))


def answered(at) -> bool:
    return bool(at.exception) or any(m.label.startswith("p(reference)") for m in at.metric) or any(
        "stopped with an error" in str(e.value) for e in at.error)


def retrieved_captions(at) -> list[tuple[int, float]]:
    """(position, cosine) of each retrieved chunk shown, from its caption "[1] Title · Section · cosine 0.641"."""
    found = [re.match(r"\[(\d+)\] .* · cosine ([0-9.]+)", c.value) for c in at.caption]
    return [(int(m.group(1)), float(m.group(2))) for m in found if m]


def check_page(lm, at, question: str, reference: str, k: int, size: int, max_new: int) -> None:
    files = read_concept_files()
    chunks = chunk_corpus(files, size)
    assert metric(at, "Concept pages") == str(len(files))
    assert metric(at, f"Chunks of ≤ {size} words") == f"{len(chunks):,}"
    assert sum(chart(at, "lengths")["data"][0]["y"]) == len(chunks)

    index = load_chunk_index(size)
    assert [c.text for c in index.chunks] == [c.text for c in chunks]
    query = embed_sentences(load_encoder(), [question])[0].astype(np.float64)
    scores = index.vectors.astype(np.float64) @ query
    order = np.argsort(-scores, kind="stable")
    top = order[:k].tolist()
    shown = retrieved_captions(at)
    assert [p for p, _ in shown] == list(range(1, k + 1))
    np.testing.assert_allclose([s for _, s in shown], np.round(scores[top], 3), atol=1.5e-3)
    texts = [m.value for m in at.markdown]
    assert all(escape_markdown(index.chunks[i].text) in texts for i in top)     # the top k by score, shown
    bars = chart(at, "scores")["data"][0]["x"]
    np.testing.assert_allclose(bars, scores[order[:len(bars)]], atol=1e-5)
    gold = next((int(i) for i in order if contains_reference(index.chunks[int(i)], reference)), None)
    rank = order.tolist().index(gold) + 1
    assert metric(at, "Chunk holding the reference").startswith(f"{rank}")

    context = [index.chunks[i] for i in top]
    ref_ids = token_ids(lm, reference)
    for label, prompt in (("p(reference), without", rag_prompt(lm, question, [])),
                          ("p(reference), with the chunks", rag_prompt(lm, question, context))):
        logprob = sequence_logprob(lm, token_ids(lm, prompt), ref_ids)
        assert metric(at, label) == probability_text(np.exp(logprob))
    answer = generate(lm, rag_prompt(lm, question, context), max_new).new_text.strip()
    assert escape_markdown(answer) in texts
    if rank <= k and k >= 2:   # the gold chunk at its own retrieved position is the with-context prompt itself
        position = top.index(gold)
        ln_with = sequence_logprob(lm, token_ids(lm, rag_prompt(lm, question, context)), ref_ids)
        bars = chart(at, "positions")["data"][0]
        assert bars["customdata"][position][0] == pytest.approx(ln_with, abs=1e-3)
        ln_without = sequence_logprob(lm, token_ids(lm, rag_prompt(lm, question, [])), ref_ids)
        assert bars["y"][position] == pytest.approx(np.exp(ln_with - ln_without), rel=1e-3)


def test_defaults_retrieve_answer_and_measure(lm):
    at = run_until(open_page("rag"), answered, timeout=900)
    assert_no_exception(at)
    assert at.text_input(key="question").value == DEFAULT_Q and at.text_input(key="ref").value == DEFAULT_REF
    check_page(lm, at, DEFAULT_Q, DEFAULT_REF, 3, 80, 32)
    assert len(chart(at, "positions")["data"][0]["y"]) == 3


def test_share_link_restores_k_and_chunk_size(lm):
    question = "How many dimensions does an all-MiniLM-L6-v2 sentence vector have?"
    params = {"question": question, "ref": "384", "k": "2", "chunk": "40", "len": "8"}
    at = run_until(open_page("rag", params), answered, timeout=900)
    assert_no_exception(at)
    assert at.slider(key="k").value == 2 and at.select_slider(key="chunk").value == 40
    check_page(lm, at, question, "384", 2, 40, 8)


def test_preset_button_sets_question_and_reference():
    at = open_page("rag")
    at.button(key="preset-2").click().run()
    assert_no_exception(at)
    assert at.text_input(key="question").value.startswith("How many dimensions")
    assert at.text_input(key="ref").value == "384"


@pytest.mark.parametrize("params", [
    {"question": ""}, {"question": "x", "ref": "", "k": "1"}, {"k": "99", "len": "-4", "chunk": "7"},
    {"ref": "<script>alert(1)</script> **b** $x$", "question": "🍓 日本語?"},
])
def test_bad_links_fall_back(lm, params):
    at = open_page("rag", params)
    assert_no_exception(at)
    if params.get("question") == "":
        assert "Type a question" in shown_text(at)
    else:
        assert chart(at, "lengths")["data"] and chart(at, "scores")["data"]
