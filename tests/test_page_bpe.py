"""The bpe page shows the library's own training, replayed: its numbers are recomputed here from the library."""
import html
import json

import numpy as np
import pytest

from engine.tokens.bpe import MAX_MERGES, merge_list, merge_ranks, train_tokenizer, trainer_tokens
from tests.pages import assert_no_exception, open_page, plotly_array, shown_text
from ui import samples
from ui.bpe import piece_label

CORPORA = samples.load("corpora")
ENGLISH = CORPORA["English prose"].strip()


def chart(at, key):
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")


def metric(at, label):
    return next(m.value for m in at.metric if m.label.startswith(label))


def words(text):
    return len(text.split())


def check_step(at, corpus, k):
    """Every number about step k, recomputed from a tokenizer the library trains with exactly k merges."""
    tokens = trainer_tokens(corpus, k, corpus)
    assert metric(at, "Vocabulary") == f"{256 + k:,}"
    assert metric(at, "Corpus tokens") == f"{len(tokens):,}"
    assert metric(at, "Tokens per word") == f"{len(tokens) / words(corpus):.2f}"
    # The chips are the replayed segmentation; they must be the library's own tokens, one for one.
    chips = chart(at, "chips")["data"][0]["text"]
    shown_chars = sum(len(piece_label(t).encode()) for t in chips)   # sanity: chips are not empty
    assert shown_chars > 0
    cut = corpus.rfind(" ", 0, 520) if len(corpus) > 520 else len(corpus)
    expected = [piece_label(t) for t in trainer_tokens(corpus, k, corpus[:cut])]
    assert [html.unescape(c) for c in chips] == expected      # plotly labels are HTML-escaped
    assert any(f"the same {len(tokens):,} tokens, one for one" in s.value for s in at.success)


def test_defaults_replay_the_library_and_tokens_per_word_falls(lm):
    at = open_page("bpe")
    assert_no_exception(at)
    merges = merge_list(train_tokenizer(ENGLISH, MAX_MERGES))
    assert at.slider(key="k").value == 12 and at.slider(key="k").proto.max == len(merges)
    check_step(at, ENGLISH, 12)
    merge = merges[11]
    assert f"{piece_label(merge[0])} \\+ {piece_label(merge[1])}" in shown_text(at)

    curve = chart(at, "curve")["data"]
    per_word = plotly_array(curve[0]["y"])
    assert len(per_word) == len(merges) + 1
    assert np.all(np.diff(per_word) < 0)                   # every merge lowers tokens per word
    for k in (0, 50, len(merges)):                         # measured points, checked against the library
        assert per_word[k] == pytest.approx(len(trainer_tokens(ENGLISH, k, ENGLISH)) / words(ENGLISH))
    assert plotly_array(curve[1]["x"])[0] == 256 + 12       # the current vocabulary is marked
    smol = len(lm.tokenizer(ENGLISH, add_special_tokens=False)["input_ids"]) / words(ENGLISH)
    assert plotly_array(curve[2]["y"])[0] == pytest.approx(smol)
    assert per_word[-1] > smol        # a 4,000-character corpus cannot match a 49k vocabulary on tokens per word

    ranks, vocab = merge_ranks(lm.tokenizer.backend_tokenizer)
    shared = sum(pair in ranks for pair in merges[:12])
    assert metric(at, "Of your first 12 merges") == f"{shared:,} shared"
    scatter = chart(at, "ranks")["data"]
    assert sorted(plotly_array(scatter[0]["y"])) == sorted(ranks[p] for p in merges if p in ranks)

    pairs = chart(at, "pairs")["data"][0]
    assert plotly_array(pairs["x"])[0] == max(plotly_array(pairs["x"]))


def test_share_link_restores_corpus_and_step(lm):
    corpus = CORPORA["German prose"].strip()
    at = open_page("bpe", {"corpus": "German prose", "text": corpus, "k": "40"})
    assert_no_exception(at)
    assert at.selectbox(key="corpus").value == "German prose" and at.slider(key="k").value == 40
    check_step(at, corpus, 40)
    at.button(key="next").click().run()
    assert at.slider(key="k").value == 41
    check_step(at, corpus, 41)


def test_the_toy_corpus_first_merges_are_the_worked_example(lm):
    toy = CORPORA["Sennrich et al.'s toy corpus"].strip()
    at = open_page("bpe", {"corpus": "Sennrich et al.'s toy corpus", "text": toy, "k": "2"})
    assert_no_exception(at)
    check_step(at, toy, 2)
    assert "**Merge 2:** es \\+ t → **est**" in shown_text(at)


def test_step_zero_and_switching_corpus_keep_working(lm):
    at = open_page("bpe", {"k": "0"})
    assert_no_exception(at)
    check_step(at, ENGLISH, 0)
    assert "Before any merge" in shown_text(at)
    at.selectbox(key="corpus").select("Python code").run()
    assert_no_exception(at)
    check_step(at, CORPORA["Python code"].strip(), at.slider(key="k").value)


@pytest.mark.parametrize("text, hint", [("", "Paste a few paragraphs"), ("abcdefg", "learned no merge"),
                                        ("🎉 " * 50, None), ("<b>x</b> $y$ :red[z] " * 20, None)])
def test_odd_corpora_end_in_a_message_or_a_checked_replay(lm, text, hint):
    at = open_page("bpe", {"text": text})
    assert_no_exception(at)
    if hint:
        assert hint in shown_text(at)
    else:
        assert any("one for one" in s.value for s in at.success)
