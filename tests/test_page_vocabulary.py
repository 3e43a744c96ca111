"""The vocabulary page shows every tokenizer's own count and split, true embedding sizes, and survives bad input."""
import html
import json

import pytest

from engine.tokens.tokenizers import QUICKTOK, quicktok_encoding, vocabulary_size
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, shown_text

ENGLISH = ("The old lighthouse keeper climbed the spiral stairs every evening, trimmed the wick, and "
           "watched the ships slip past the rocks until dawn.")
NAMES = ["SmolLM2", "GPT-4 cl100k", "GPT-4o o200k", "Llama 3", "Qwen2.5/3", "BERT WordPiece"]


@pytest.fixture(scope="module")
def enc():
    from engine.model.encoder import load_encoder
    return load_encoder()


def charts(at) -> dict[str, dict]:
    found = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        found[str((spec["layout"].get("title") or {}).get("text", ""))] = spec
    return found


def chart(at, title_start: str) -> dict:
    matches = [spec for title, spec in charts(at).items() if title.startswith(title_start)]
    assert len(matches) == 1, (title_start, list(charts(at)))
    return matches[0]


def counts(at) -> dict[str, int]:
    bars = chart(at, "Tokens for the same")["data"][0]
    return dict(zip([html.unescape(y) for y in bars["y"]], bars["x"]))


def expected_ids(lm, enc, key: str, text: str) -> list[int]:
    if key == "smollm2":
        return token_ids(lm, text)
    if key == "bert":
        with enc.tokenizing() as tok:
            return tok(text, add_special_tokens=False)["input_ids"]
    return quicktok_encoding(key).encode_ordinary(text)


def check_splits(at, lm, enc, text: str, shown: int) -> None:
    keys = ["smollm2", *QUICKTOK, "bert"]
    for key, name in zip(keys, NAMES):
        spec = chart(at, f"{name}: ")
        ids = [c[0] for c in spec["data"][0]["customdata"]]
        full = expected_ids(lm, enc, key, text)
        assert ids == full[:shown], name
        assert f"{name}: {len(full):,} tokens" in spec["layout"]["title"]["text"]


def test_defaults_show_each_tokenizers_own_count_and_split(lm, enc):
    at = open_page("vocabulary")
    assert_no_exception(at)
    assert at.text_area(key="text").value == ENGLISH
    shown = counts(at)
    assert list(shown) == NAMES
    for key, name in zip(QUICKTOK, NAMES[1:5]):
        assert shown[name] == quicktok_encoding(key).count(ENGLISH) == len(quicktok_encoding(key).encode(ENGLISH))
    assert shown["SmolLM2"] == len(token_ids(lm, ENGLISH))
    assert shown["BERT WordPiece"] == len(expected_ids(lm, enc, "bert", ENGLISH))
    check_splits(at, lm, enc, ENGLISH, 40)
    embed = chart(at, "Embedding parameters = vocabulary × 576, stored in fp32")["data"][0]
    vocabs = [row[0] for row in embed["customdata"]]
    assert vocabs == [49152, vocabulary_size("cl100k").total, vocabulary_size("o200k").total, 128256,
                      vocabulary_size("qwen").total, 30522]
    assert embed["x"] == pytest.approx([v * 576 / 1e6 for v in vocabs])
    assert [row[1] for row in embed["customdata"]] == [v * 576 for v in vocabs]
    assert "28,311,552 parameters" in shown_text(at)       # read from the live model's embedding matrix


def test_default_cl100k_count_matches_quicktok_on_the_mixed_sample(lm, enc):
    text = "Tokenization isn't magic: ChatGPT reads 'strawberry' as pieces. 🍓 東京 1234567"
    at = open_page("vocabulary", {"text": text})
    assert_no_exception(at)
    assert counts(at)["GPT-4 cl100k"] == quicktok_encoding("cl100k").count(text)
    check_splits(at, lm, enc, text, 40)


def test_share_link_state_is_restored(lm, enc):
    at = open_page("vocabulary", {"preset": "Chinese", "n": "20", "d": "4096", "dtype": "bf16", "untied": "true",
                                  "ids": "true"})
    assert_no_exception(at)
    chinese = at.text_area(key="text").value
    assert chinese.startswith("老灯塔")
    assert at.selectbox(key="preset").value == "Chinese"
    widgets = (at.slider(key="n").value, at.select_slider(key="d").value, at.radio(key="dtype").value)
    assert widgets == (20, 4096, "bf16")
    check_splits(at, lm, enc, chinese, 20)
    smol = chart(at, "SmolLM2: ")["data"][0]
    assert [html.unescape(t) for t in smol["text"]] == [str(c[0]) for c in smol["customdata"]]   # the id view
    embed = chart(at, "Embedding parameters = 2 × vocabulary × 4,096, stored in bf16")["data"][0]
    for vocab, params, megabytes in embed["customdata"]:
        assert params == 2 * vocab * 4096
        assert float(megabytes.replace(",", "")) == pytest.approx(params * 2 / 1e6, abs=0.05)


def test_picking_a_preset_loads_its_text_and_edited_text_wins(lm):
    at = open_page("vocabulary")
    at.selectbox(key="preset").select("Python code").run()
    assert_no_exception(at)
    code = at.text_area(key="text").value
    assert code.startswith("def mean(")
    assert counts(at)["SmolLM2"] == len(token_ids(lm, code))
    edited = open_page("vocabulary", {"preset": "German", "text": "ganz eigener Text"})
    assert edited.text_area(key="text").value == "ganz eigener Text"


@pytest.mark.parametrize("params", [
    {"text": ""}, {"text": "   "}, {"text": "a" * 100_000}, {"text": "🍓 emoji 日本語 العربية Ελληνικά 👨‍👩‍👧"},
    {"text": "ctrl \x00\x07\x1b[0m chars"}, {"text": "<script>alert(1)</script> <b>x</b> **bold** $x$"},
    {"d": "banana", "dtype": "fp8", "n": "-3", "preset": "Klingon", "untied": "maybe", "ids": "2"},
    {"d": "99999", "n": "100000"}, {"text": "<|endoftext|> [UNK] [CLS] ##ing"},
])
def test_bad_input_never_shows_a_traceback(lm, params):
    at = open_page("vocabulary", params)
    assert_no_exception(at)
    text = shown_text(at)
    if params.get("text", "x") == "":
        assert "Type or paste some text" in text
    else:
        assert len(counts(at)) == 6
    if len(params.get("text", "")) > 10_000:
        assert "Cut to the first" in text
    assert chart(at, "Embedding parameters")                     # the cost part works without any text
