"""The token-embeddings page shows the model's own vectors, follows its share links, and survives bad input."""
import base64
import json

import numpy as np
import pytest

from engine.inside.embeddings import embedding_matrix, lookup_word, map_words, normalize_rows, solve_analogy
from tests.pages import assert_no_exception, open_page, shown_text

SLUG = "token-embeddings"


def figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def figure(at, title_part: str) -> dict:
    found = [f for f in figures(at) if title_part in f["layout"].get("title", {}).get("text", "")]
    assert found, [f["layout"].get("title", {}).get("text") for f in figures(at)]
    return found[0]


def values(data) -> np.ndarray:
    """A plotly array from the chart spec: a plain list, or numpy data sent as {"dtype", "bdata"} (base64)."""
    if isinstance(data, dict):
        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=np.dtype(data["dtype"])).reshape(
            data.get("shape", -1) if isinstance(data.get("shape"), int) else -1)
    return np.asarray(data)


def bar_labels(fig: dict) -> list[str]:
    return [y.replace("\u200b", "") for y in fig["data"][0]["y"]]


def word_traces(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if not t["name"].startswith("context")]


def test_defaults_show_the_models_vectors_neighbours_and_arithmetic(lm):
    at = open_page(SLUG)
    assert_no_exception(at)
    scatter = figure(at, "PCA of their 576-dimensional vectors")
    traces = word_traces(scatter)
    assert [t["name"] for t in traces] == ["animals", "countries", "colours", "numbers"]
    assert sum(len(values(t["x"])) for t in traces) == 40
    text = at.text_area(key="words").value
    expected = map_words(lm, text, True, "pca", 2).points
    shown_x = np.concatenate([values(t["x"]) for t in traces])
    shown_y = np.concatenate([values(t["y"]) for t in traces])
    assert np.allclose(shown_x, expected["x"], atol=1e-6) and np.allclose(shown_y, expected["y"], atol=1e-6)
    assert "PC1 (" in scatter["layout"]["xaxis"]["title"]["text"]
    variance = figure(at, "Variance kept")
    ratios = values(variance["data"][0]["y"])
    assert len(ratios) == 10 and ratios[0] > ratios[1]

    neighbours = figure(at, "Closest of all 49,152 tokens")
    labels = bar_labels(neighbours)
    assert labels[0] == "␣king" and values(neighbours["data"][0]["x"])[0] == pytest.approx(1.0, abs=1e-5)
    assert "␣King" in labels and "␣queen" in labels and len(labels) == 15

    including, excluding = figure(at, "All tokens (inputs included)"), figure(at, "Inputs excluded")
    assert bar_labels(including)[:2] == ["␣queen", "␣king"] and "␣king" not in bar_labels(excluding)
    unit = normalize_rows(embedding_matrix(lm))
    solved = solve_analogy(lm, unit, "king", "man", "woman", "queen")
    assert values(including["data"][0]["x"])[0] == pytest.approx(solved.including[0].cosine, abs=1e-6)
    shown = shown_text(at)
    assert "Rank of ␣queen, all tokens 1st" in shown and f"{solved.expected_cosine:.3f}" in shown
    assert "Tied to the output layer yes" in shown and "Rows (tokens) 49,152" in shown


@pytest.mark.parametrize("params", [{"method": "tsne", "dims": "3"}, {"method": "t-SNE", "dims": "3-D"}])
def test_share_link_restores_tsne_in_3d(lm, params):
    at = open_page(SLUG, {**params, "seed": "4"})
    assert_no_exception(at)
    assert at.session_state["method"] == "t-SNE" and at.session_state["dims"] == "3-D"
    assert at.number_input(key="seed").value == 4
    scatter = figure(at, "t-SNE of their")
    traces = word_traces(scatter)
    assert {t["type"] for t in traces} == {"scatter3d"}
    expected = map_words(lm, at.text_area(key="words").value, True, "tsne", 3, seed=4).points
    assert np.allclose(np.concatenate([values(t["z"]) for t in traces]), expected["z"], atol=1e-4)
    assert "t-SNE has no explained variance" in shown_text(at)


def test_share_link_restores_every_section(lm):
    at = open_page(SLUG, {"preset": "Verbs in three tenses", "word": "Paris", "k": "8", "self": "true",
                          "variants": "true", "analogy": "Paris - France + Italy", "context": "100"})
    assert_no_exception(at)
    scatter = figure(at, "PCA of their")
    assert [t["name"] for t in word_traces(scatter)] == ["present", "past", "-ing"]
    context = [t for t in scatter["data"] if t["name"].startswith("context")]
    assert context and 90 <= len(values(context[0]["x"])) <= 100
    labels = bar_labels(figure(at, "Closest of all 49,152 tokens to ␣Paris"))
    assert len(labels) == 8 and "␣Paris" not in labels and "Paris" not in labels
    assert at.text_input(key="a").value == "Paris" and at.text_input(key="expect").value == "Rome"
    assert bar_labels(figure(at, "All tokens"))[0] == "␣Paris"   # the input itself wins: shown, not hidden
    unit = normalize_rows(embedding_matrix(lm))
    rank = solve_analogy(lm, unit, "Paris", "France", "Italy", "Rome").expected_rank_all
    assert rank > 10 and f"{rank}th" in shown_text(at).replace(",", "")
    assert "one of the inputs" in shown_text(at)


def test_presets_fill_the_words_and_editing_marks_custom():
    at = open_page(SLUG)
    at.selectbox(key="preset").select("Code keywords vs English").run()
    assert at.text_area(key="words").value.startswith("Python: def, lambda")
    assert [t["name"] for t in word_traces(figure(at, "PCA of their"))] == ["Python", "JavaScript", "English"]
    at.text_area(key="words").input("fruit: apple, pear, plum\ntools: hammer, saw, drill").run()
    assert at.selectbox(key="preset").value == "Custom (edited)"
    assert [t["name"] for t in word_traces(figure(at, "PCA of their"))] == ["fruit", "tools"]
    at.selectbox(key="analogy").select("bigger - big + small").run()
    assert [at.text_input(key=k).value for k in ("a", "b", "c", "expect")] == ["bigger", "big", "small", "smaller"]
    at.text_input(key="c").input("tall").run()
    assert at.selectbox(key="analogy").value == "Custom (edited)"


def test_leading_space_toggle_changes_the_tokens(lm):
    at = open_page(SLUG, {"space": "false", "word": "king"})
    assert_no_exception(at)
    labels = bar_labels(figure(at, "Closest of all 49,152 tokens to king"))
    assert labels[0] == "king" and lookup_word(lm, "king", False).ids[0] != lookup_word(lm, "king").ids[0]


@pytest.mark.parametrize("params", [
    {"words": ""}, {"words": "   \n  "}, {"words": "lonely"},
    {"words": "a: 🍓, 🚀, 日本語\nb: العربية, Ελληνικά, x"},
    {"words": "x" * 100_000}, {"words": "<script>alert(1)</script>, <b>b</b>, [link](http://x), $x$"},
    {"words": "ctrl: \x00\x07, \x1b[0m, tab\tbed", "method": "umap"}, {"words": "a, b, c", "method": "tsne"},
    {"word": "", "a": "", "expect": ""}, {"word": "🍓 <script>", "a": "<b>x</b>", "b": "*y*", "c": "`z`"},
    {"method": "banana", "dims": "7", "context": "-5", "seed": "abc", "k": "99999", "space": "maybe",
     "self": "2", "preset": "nope", "analogy": "nope", "unknown": "x"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page(SLUG, params)
    assert_no_exception(at)
    text = shown_text(at)
    words = params.get("words")
    if words is not None and len(words.split()) <= 1 and len(words) < 100:
        assert "Type at least two words" in text
    if words and len(words) > 10_000:
        assert "Cut to the first 3,000" in text
    if params.get("a") == "":
        assert "Fill in all three words" in text
    if params.get("word") == "":
        assert "Type a word or token" in text
