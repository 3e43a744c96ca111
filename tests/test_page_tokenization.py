"""The tokenization page shows SmolLM2's own tokens, the real strawberry split, and survives bad input."""
import html
import json

import pytest

from engine.tokens.tokenizers import ask, count_question, number_in_answer, smollm2_tokens, text_stats
from engine.tokens.offsets import decode, token_ids
from tests.pages import assert_no_exception, open_page, shown_text

DEFAULT_TEXT = "Tokenization isn't magic: ChatGPT reads 'strawberry' as pieces. 🍓 東京 1234567"


def chart(at, title_start: str) -> dict:
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = spec["layout"].get("title") or {}
        if str(title.get("text", "")).startswith(title_start):
            return spec
    raise AssertionError(f"no chart titled {title_start!r}")


def chips(spec: dict) -> tuple[list[int], list[str]]:
    bars = spec["data"][0]
    return [c[0] for c in bars["customdata"]], [html.unescape(t) for t in bars["text"]]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_defaults_show_the_tokenizers_ids_and_figures(lm):
    at = open_page("tokenization")
    assert_no_exception(at)
    ids, labels = chips(chart(at, "Your text as SmolLM2 reads it"))
    tokens = smollm2_tokens(lm, DEFAULT_TEXT)
    assert ids == token_ids(lm, DEFAULT_TEXT) == [t.id for t in tokens]
    assert decode(lm, ids) == DEFAULT_TEXT
    assert labels == [t.label for t in tokens]
    assert "␣magic" in labels                                  # whitespace made visible
    assert any("⟨F0 9F⟩" in label for label in labels)        # the emoji's first bytes, flagged
    stats = text_stats(DEFAULT_TEXT, len(ids))
    assert metric(at, "Tokens") == str(len(ids))
    assert metric(at, "Characters") == str(len(DEFAULT_TEXT))
    assert metric(at, "Words") == str(len(DEFAULT_TEXT.split()))
    assert metric(at, "Characters per token") == f"{stats.chars_per_token:.2f}"
    assert metric(at, "Words per token") == f"{stats.words_per_token:.2f}"
    assert "only part of a character" in shown_text(at)


def test_strawberry_split_is_the_real_one(lm):
    at = open_page("tokenization")
    spec = chart(at, "How SmolLM2 splits the word")
    ids, _ = chips(spec)
    plain, spaced = token_ids(lm, "strawberry"), token_ids(lm, " strawberry")
    assert ids == plain + spaced
    assert len(spaced) == 1 and len(plain) > 1                 # " strawberry" is one token in SmolLM2
    assert [html.unescape(t) for t in spec["layout"]["yaxis"]["ticktext"]] == ["strawberry", "␣strawberry"]
    assert metric(at, "True count") == "3"
    assert not at.toggle(key="ask").value                        # the model is asked only on request
    assert metric(at, "SmolLM2's count") == "—"


def test_share_link_state_is_restored(lm):
    params = {"text": "Hello world\nnew line", "ids": "true", "word": "raspberry", "letter": "p", "ask": "true"}
    at = open_page("tokenization", params)
    assert_no_exception(at)
    assert at.text_area(key="text").value == "Hello world\nnew line"
    assert at.toggle(key="ids").value and at.toggle(key="ask").value
    ids, labels = chips(chart(at, "Your text as SmolLM2 reads it"))
    assert ids == token_ids(lm, "Hello world\nnew line")
    assert labels == [str(i) for i in ids]                       # the id view
    word_ids, _ = chips(chart(at, "How SmolLM2 splits the word"))
    assert word_ids == token_ids(lm, "raspberry") + token_ids(lm, " raspberry")
    assert metric(at, "True count") == "1"
    answer = ask(lm, count_question("raspberry", "p"), 24).answer
    assert any(c.value == answer for c in at.code)
    said = number_in_answer(answer)
    assert metric(at, "SmolLM2's count") == ("no number" if said is None else str(said))
    assert any(c.value == "How many p's are in raspberry?" for c in at.code)


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "   "}, {"text": "a" * 100_000}, {"text": "🍓 emoji 日本語 العربية Ελληνικά 👨‍👩‍👧"},
    {"text": "ctrl \x00\x07\x1b[0m chars"}, {"text": "<script>alert(1)</script> <b>x</b> **bold** $x$"},
    {"ids": "banana", "ask": "maybe", "letter": "xyz", "unknown": "x"}, {"word": "", "letter": ""},
    {"word": "<img src=x onerror=alert(1)>" * 5, "letter": "<"}, {"text": "<|im_start|>system"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("tokenization", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text", "x") == "":
        assert "Type or paste any text" in text
    if len(params.get("text", "")) > 10_000:
        assert "Cut to the first" in text
    if params.get("word", "x") == "":
        assert "Type a word and one letter" in text
    if "text" in params and params["text"].strip() and "\x00" not in params["text"]:
        ids, _ = chips(chart(at, "Your text as SmolLM2 reads it"))
        assert decode(lm, ids) == at.text_area(key="text").value[:len(decode(lm, ids))]
