"""Byte-pair encoding trained live by the `tokenizers` library, then replayed merge by merge.

The trainer (Hugging Face `tokenizers`, the library that built SmolLM2's own tokenizer) learns a merge list
on the reader's corpus in milliseconds, but it only hands back the result. The replay here walks the same
list one merge at a time over the same pre-tokenized corpus and records what the trainer saw at each step:
how often the merged pair occurred, which pairs came next, how many tokens the corpus took afterwards.
A unit test holds the replay to the library: after k merges it segments any text exactly as a tokenizer
the library trained with k merges does.

Both sides use byte-level BPE as GPT-2 and SmolLM2 do: text is first cut into pre-tokens (words with their
leading space, runs of punctuation, digits, whitespace) by the same regular expression, each byte is one
starting symbol, and merges never cross a pre-token boundary. Symbols are written in the byte-level
spelling (a space is 'Ġ', a newline 'Ċ'), so a learned pair can be looked up in SmolLM2's merge list as is.
"""
from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache

from engine.tokens.tokenizers import piece_to_bytes, spans_from_bytes

BYTE_ALPHABET = 256        # byte-level BPE starts from one symbol per byte value
MIN_PAIR_COUNT = 2         # a pair seen only once is not worth a vocabulary entry: training stops there
MAX_MERGES = 1000          # bounded work: a 4,000-character corpus runs out of repeated pairs well before
TOP_PAIRS = 8              # the pair counts kept for each step, most frequent first


@lru_cache(maxsize=1)
def _pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def pre_tokenize(text: str) -> list[tuple[str, tuple[int, int]]]:
    """Pre-tokens of `text` in byte-level spelling, with their character spans (GPT-2's regular expression)."""
    return _pre_tokenizer().pre_tokenize_str(text) if text else []


def train_tokenizer(corpus: str, merges: int):
    """A byte-level BPE tokenizer trained by the `tokenizers` library with at most `merges` merges.

    The vocabulary is the 256 byte symbols plus one entry per merge; training stops early when no pair
    occurs at least MIN_PAIR_COUNT times.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BYTE_ALPHABET + max(0, int(merges)), min_frequency=MIN_PAIR_COUNT,
                                  show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([corpus], trainer=trainer)
    return tokenizer


def merge_list(tokenizer) -> list[tuple[str, str]]:
    """A BPE tokenizer's merges in rank order, read from its own serialization."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
            for m in json.loads(tokenizer.to_str())["model"]["merges"]]


def trainer_tokens(corpus: str, merges: int, text: str) -> list[str]:
    """`text` as the library's own tokenizer, trained on `corpus` with `merges` merges, segments it."""
    return train_tokenizer(corpus, merges).encode(text).tokens if text else []


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairCount:
    left: str
    right: str
    count: int


@dataclass(frozen=True)
class Merge:
    step: int               # 1-based: the trainer's rank for this merge
    left: str               # byte-level spelling
    right: str
    count: int              # adjacent occurrences of the pair in the corpus just before this merge
    tokens_after: int       # tokens the whole corpus takes once this merge is applied
    runner_up: int          # count of the most frequent other pair at that moment (0 if none)

    @property
    def token(self) -> str:
        return self.left + self.right


@dataclass(frozen=True)
class Replay:
    """The trainer's merges replayed on its corpus: one entry per merge, in order."""
    merges: tuple[Merge, ...]
    top_pairs: tuple[tuple[PairCount, ...], ...]   # [k]: the most frequent pairs after k merges (len = merges + 1)
    tokens_before: int      # the corpus in bytes: tokens before any merge
    words: int              # whitespace-separated words of the corpus
    characters: int
    pre_tokens: int
    distinct_pre_tokens: int

    def tokens_after(self, k: int) -> int:
        """Corpus tokens once the first k merges are applied (k = 0: one per byte)."""
        return self.merges[k - 1].tokens_after if k > 0 else self.tokens_before

    def tokens_per_word(self, k: int) -> float:
        return self.tokens_after(k) / self.words if self.words else 0.0


def _pairs(symbols: tuple[str, ...]) -> Counter:
    return Counter(zip(symbols, symbols[1:]))


def _apply(symbols: tuple[str, ...], left: str, right: str) -> tuple[str, ...]:
    """Merge every occurrence of (left, right), left to right, without overlaps (as the trainer does)."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def replay(corpus: str, merges: list[tuple[str, str]], top: int = TOP_PAIRS) -> Replay:
    """Apply `merges` one by one to the pre-tokenized corpus, counting pairs as the trainer counts them.

    Counts are kept incrementally (only the pre-tokens that hold the merged pair are recounted), so a
    thousand merges over a few thousand pre-tokens take a fraction of a second.
    """
    pieces = [p for p, _ in pre_tokenize(corpus)]
    frequency = Counter(pieces)
    words = [tuple(p) for p in frequency]                 # one starting symbol per byte
    counts = [frequency[p] for p in frequency]
    pair_counts: Counter = Counter()
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)   # pair -> pre-tokens that contain it
    for index, symbols in enumerate(words):
        for pair, n in _pairs(symbols).items():
            pair_counts[pair] += n * counts[index]
            holders[pair].add(index)
    total = sum(len(w) * c for w, c in zip(words, counts))
    tokens_before = total
    def most_frequent() -> list[tuple[int, tuple[str, str]]]:
        return heapq.nlargest(top + 1, ((n, pair) for pair, n in pair_counts.items() if n > 0),
                              key=lambda item: item[0])

    steps, tops = [], []
    for step, (left, right) in enumerate(merges, start=1):
        ranked = most_frequent()
        tops.append(tuple(PairCount(a, b, n) for n, (a, b) in ranked[:top]))
        count = pair_counts.get((left, right), 0)
        runner_up = max((n for n, pair in ranked if pair != (left, right)), default=0)
        for index in list(holders.get((left, right), ())):
            before = words[index]
            after = _apply(before, left, right)
            if after == before:
                continue
            for pair, n in _pairs(before).items():
                pair_counts[pair] -= n * counts[index]
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
                holders[pair].discard(index)
            for pair, n in _pairs(after).items():
                pair_counts[pair] += n * counts[index]
                holders[pair].add(index)
            total -= (len(before) - len(after)) * counts[index]
            words[index] = after
        steps.append(Merge(step, left, right, count, total, runner_up))
    tops.append(tuple(PairCount(a, b, n) for n, (a, b) in most_frequent()[:top]))   # after the last merge
    return Replay(merges=tuple(steps), top_pairs=tuple(tops), tokens_before=tokens_before,
                  words=len(corpus.split()), characters=len(corpus), pre_tokens=len(pieces),
                  distinct_pre_tokens=len(frequency))


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    piece: str          # byte-level spelling
    raw: bytes          # the bytes it stands for
    start: int          # character span in the text
    end: int
    made_at: int        # the merge step that created this token; 0 for a single byte


def segment(text: str, merges: list[tuple[str, str]]) -> list[Segment]:
    """`text` cut by the given merges, applied in rank order (the lowest rank present merges first).

    Applying them in rank order to every pre-token is the same as the library's encoder: a pair formed by a
    later merge always ranks below both of its parts, so no earlier merge can become possible again.
    """
    rank = {pair: i for i, pair in enumerate(merges, start=1)}
    made = {left + right: i for i, (left, right) in reversed(list(enumerate(merges, start=1)))}
    out: list[Segment] = []
    for piece, (start, end) in pre_tokenize(text):
        symbols = list(piece)
        while len(symbols) > 1:
            best = min(((rank.get(pair), i) for i, pair in enumerate(zip(symbols, symbols[1:]))
                        if pair in rank), default=None)
            if best is None:
                break
            pair = (symbols[best[1]], symbols[best[1] + 1])
            symbols = list(_apply(tuple(symbols), *pair))
        raws = [piece_to_bytes(s) or b"" for s in symbols]
        source = text[start:end]
        for symbol, raw, (s, e) in zip(symbols, raws, spans_from_bytes(source, raws)):
            out.append(Segment(symbol, raw, start + s, start + e, made.get(symbol, 0) if len(symbol) > 1 else 0))
    return out


def tokens_per_word(text: str, tokens: int) -> float:
    words = len(text.split())
    return tokens / words if words else 0.0


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankInOther:
    step: int               # our merge's step
    other_rank: int | None  # the same pair's rank in the other merge list (1-based), None if absent
    token_in_vocab: bool    # whether the merged token is in the other vocabulary at all (by any route)


def compare_ranks(merges: list[tuple[str, str]], other_ranks: dict[tuple[str, str], int],
                  other_vocab: set[str] | frozenset[str]) -> list[RankInOther]:
    """Where each of our merges sits in another tokenizer's merge list (SmolLM2's, read from the model)."""
    return [RankInOther(step, other_ranks.get((a, b)), (a + b) in other_vocab)
            for step, (a, b) in enumerate(merges, start=1)]


def merge_ranks(tokenizer) -> tuple[dict[tuple[str, str], int], frozenset[str]]:
    """A Hugging Face BPE tokenizer's merges as {pair: 1-based rank}, and its vocabulary entries."""
    model = json.loads(tokenizer.to_str())["model"]
    ranks = {}
    for i, m in enumerate(model["merges"], start=1):
        pair = tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
        ranks.setdefault(pair, i)
    return ranks, frozenset(model["vocab"])
