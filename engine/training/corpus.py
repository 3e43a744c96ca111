"""The baby GPT's corpus: a small public-domain text, its characters as the vocabulary, a train/validation split.

The text is Aesop's fables retold in plain English for this app (assets/fables.txt). The fables themselves are
ancient and in the public domain; the retelling was written for the handbook and is dedicated to the public
domain too, so the file can ship with the app and be trained on by anyone.

Characters, not BPE tokens: with about 60 symbols the model's first loss is ln(60) ~ 4.1 nats, and in a few
hundred steps a model of ~100k parameters learns spelling and common words, which a reader can see in its
samples. A BPE vocabulary would spend most of such a small model on its embedding table.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPUS_FILE = Path(__file__).resolve().parent.parent.parent / "assets" / "fables.txt"
CORPUS_TITLE = "Aesop's fables, retold in plain English (public domain)"


@dataclass(frozen=True, eq=False)
class CharCorpus:
    """A text and its character vocabulary: token i is the character `alphabet[i]`."""
    text: str
    alphabet: str          # the distinct characters of the text, sorted
    ids: np.ndarray        # [len(text)] int64, the text as token ids

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet)

    @property
    def uniform_loss(self) -> float:
        """The loss of a model that gives every character the same probability: ln V nats."""
        return math.log(self.vocab_size)

    def encode(self, text: str) -> list[int]:
        """Token ids of the characters of `text` that are in the vocabulary (others are dropped)."""
        index = self._index
        return [index[c] for c in text if c in index]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[int(i)] for i in ids)

    def known(self, text: str) -> str:
        """`text` without the characters the model has never seen (it has no token for them)."""
        return "".join(c for c in text if c in self._index)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.alphabet)}

    def split(self, train_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """(train ids, validation ids): the first `train_fraction` of the text trains, the rest is held out.

        A contiguous cut, as nanoGPT's character-level Shakespeare does: the held-out part is fables the model
        never saw, so its loss measures what carries over to new text, not memorised windows.
        """
        cut = int(round(len(self.ids) * min(max(train_fraction, 0.5), 0.95)))
        return self.ids[:cut], self.ids[cut:]


@functools.cache
def load_corpus() -> CharCorpus:
    text = CORPUS_FILE.read_text(encoding="utf-8")
    alphabet = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(alphabet)}
    ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    ids.setflags(write=False)   # shared by every run: read-only
    return CharCorpus(text=text, alphabet=alphabet, ids=ids)
