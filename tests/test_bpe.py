"""The BPE replay is held to the `tokenizers` library: same merges, same segmentation, counts the trainer saw."""
import pytest

from charts.bpe import merge_chips, pair_bars, rank_scatter, tokens_per_word_curve
from charts.tokens import Chip
from engine.tokens.bpe import (BYTE_ALPHABET, MAX_MERGES, compare_ranks, merge_list, merge_ranks, pre_tokenize, replay,
                        segment, train_tokenizer, trainer_tokens)
from ui import samples

CORPORA = samples.load("corpora")
ENGLISH = CORPORA["English prose"].strip()
TOY = "low low low low low lower lower newest newest newest newest newest newest widest widest widest"
PROBE = "Unseen words: strawberry, tokenization!! 1234  and émigré 🎉 naïve\n\tcode()"


@pytest.fixture(scope="module")
def english():
    merges = merge_list(train_tokenizer(ENGLISH, MAX_MERGES))
    return merges, replay(ENGLISH, merges)


def test_a_shorter_run_learns_exactly_the_first_merges_of_a_longer_one(english):
    merges, _ = english
    for k in (1, 10, 100):
        assert merge_list(train_tokenizer(ENGLISH, k)) == merges[:k]


@pytest.mark.parametrize("name", list(CORPORA))
@pytest.mark.parametrize("k", [0, 1, 7, 60, None])
def test_replaying_k_merges_segments_like_the_library_trained_with_k(name, k):
    corpus = CORPORA[name].strip()
    merges = merge_list(train_tokenizer(corpus, MAX_MERGES))
    k = len(merges) if k is None else min(k, len(merges))
    for text in (corpus, PROBE):
        assert [s.piece for s in segment(text, merges[:k])] == trainer_tokens(corpus, k, text)


def test_each_merge_takes_a_pair_of_highest_count_and_the_corpus_shrinks(english):
    merges, run = english
    assert [(m.left, m.right) for m in run.merges] == merges
    assert all(m.count >= m.runner_up and m.count >= 2 for m in run.merges)
    counts = [run.tokens_after(k) for k in range(len(merges) + 1)]
    assert counts[0] == len(ENGLISH.encode("utf-8"))          # before any merge: one token per byte
    assert all(a > b for a, b in zip(counts, counts[1:]))     # every merge saves at least one token
    for k in (0, 5, 50, len(merges)):
        assert run.tokens_after(k) == len(segment(ENGLISH, merges[:k]))
    # The top pair shown before merge k is the one merged (or ties with it).
    for step, m in enumerate(run.merges):
        assert run.top_pairs[step][0].count == m.count
    assert len(run.top_pairs) == len(merges) + 1


def test_the_toy_corpus_merges_as_in_the_worked_example():
    run = replay(TOY, merge_list(train_tokenizer(TOY, 50)))
    first = [(m.left, m.right, m.count) for m in run.merges[:4]]
    assert first == [("e", "s", 9), ("es", "t", 9), ("l", "o", 7), ("lo", "w", 7)]
    assert run.words == 16 and run.tokens_per_word(0) == len(TOY) / 16


def test_segments_cover_the_text_and_name_the_merge_that_made_them(english):
    merges, _ = english
    segments = segment(PROBE, merges[:30])
    assert b"".join(s.raw for s in segments) == PROBE.encode("utf-8")
    assert all(0 <= s.made_at <= 30 for s in segments)
    for s in segments:
        if s.made_at:
            left, right = merges[s.made_at - 1]
            assert left + right == s.piece
    assert [p for p, _ in pre_tokenize("a b")] == ["a", "Ġb"]


def test_ranks_in_another_list():
    ours = [("Ġ", "t"), ("x", "y"), ("Ġt", "he")]
    found = compare_ranks(ours, {("Ġ", "t"): 1, ("Ġt", "he"): 9}, frozenset({"Ġt", "Ġthe", "xy"}))
    assert [(f.step, f.other_rank, f.token_in_vocab) for f in found] == [(1, 1, True), (2, None, True), (3, 9, True)]


def test_smollm2_merge_ranks_are_read_from_its_tokenizer(lm):
    ranks, vocab = merge_ranks(lm.tokenizer.backend_tokenizer)
    assert ranks[("Ġ", "t")] == 1 and len(vocab) == len(lm.tokenizer.get_vocab())
    assert len(ranks) > 40_000 and min(ranks.values()) == 1


def test_no_repeated_pair_means_no_merge():
    assert merge_list(train_tokenizer("abc", 10)) == []
    assert replay("abc", []).tokens_before == 3 and BYTE_ALPHABET == 256


def test_charts_draw_their_data():
    chips = [Chip("a", "h"), Chip("bc", "h")]
    fig = merge_chips(chips, [False, True], title="t")
    assert list(fig.data[0].marker.color)[1] != list(fig.data[0].marker.color)[0]
    assert fig.data[-1].name == "made by this merge"
    bars = pair_bars(["a + b", "c + d"], [5, 3], 0)
    assert list(bars.data[0].x) == [5, 3]
    curve = tokens_per_word_curve([256, 257, 258], [3.0, 2.5, 2.0], 257, 1.2, "ref")
    assert list(curve.data[1].y) == [2.5] and list(curve.data[2].y) == [1.2, 1.2]
    scatter = rank_scatter([1, 2], [3, None], ["x", "y"], 100_000, 1)
    assert list(scatter.data[0].y) == [3] and list(scatter.data[1].y) == [100_000]
