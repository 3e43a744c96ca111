"""A benchmark measured: multiple-choice items scored by log-likelihood three ways, accuracy with its interval,
and contamination made visible with per-token log-probabilities (Min-K% Prob).

Scoring. The model never writes an answer: each choice is appended to the prompt and its log-likelihood read,
with `engine.using.prompting.score_prompts` (one pass for the prompt, the choice tokens after it). Three formats, as
lm-evaluation-harness offers for MMLU:
- letters ("MMLU style"): the question and its four options labelled A-D are in the prompt; the choices scored
  are the single tokens " A", " B", " C", " D". The model must link a letter to an option it has read.
- answer text, summed ("cloze", harness `acc`): only the question is in the prompt; each option's own text is
  scored, ln p(option | question) summed over its tokens. Longer options pay for every extra token.
- answer text, per byte (harness `acc_norm`): the same sums divided by the option's UTF-8 bytes, which removes
  most of that length penalty and compares fairly across tokenizers.
The prediction is the highest-scoring choice; accuracy is correct / total. A set of n items measures accuracy
only to within a Wilson score interval, wide for small n: the page shows it so two numbers are not over-read.

Contamination. A text seen many times in training is predicted well everywhere, including at its rarest words;
an unseen text of the same meaning has a few tokens the model finds very surprising. Min-K% Prob (Shi et al.
2023) averages the log-probabilities of the k% least likely tokens: a high (near 0) value hints the text was
in the training data. The first token has nothing before it and is not scored.
"""
from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.model.live_model import LiveModel
from engine.decoding.loss import token_losses
from engine.using.prompting import score_prompts
from engine.tokens.offsets import token_ids

BENCHMARK_FILE = Path(__file__).resolve().parents[2] / "assets" / "benchmarks.toml"
LETTERS = "ABCD"
HEADER = "The following are multiple choice questions (with answers) about general knowledge."
VARIANTS = {"letters": "Letters A-D (MMLU style)", "summed": "Answer text, summed",
            "per_byte": "Answer text, per byte"}
Z_95 = 1.959964   # two-sided 95% normal quantile


@dataclass(frozen=True)
class Item:
    question: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class Passage:
    name: str
    verbatim: str
    paraphrase: str


@functools.cache
def _read(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


@functools.cache
def load_items(path: Path = BENCHMARK_FILE) -> tuple[Item, ...]:
    """The bundled items, checked: four distinct choices each and an answer that points at one of them."""
    items = []
    for raw in _read(path)["items"]:
        item = Item(raw["question"], tuple(raw["choices"]), int(raw["answer"]))
        if len(item.choices) != len(LETTERS) or len(set(item.choices)) != len(item.choices) \
                or not 0 <= item.answer < len(item.choices):
            raise ValueError(f"{path.name}: bad item {item.question!r}")
        items.append(item)
    return tuple(items)


@functools.cache
def load_passages(path: Path = BENCHMARK_FILE) -> tuple[Passage, ...]:
    return tuple(Passage(p["name"], p["verbatim"], p["paraphrase"]) for p in _read(path)["passages"])


def letter_prompt(item: Item) -> str:
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, item.choices))
    return f"{HEADER}\n\nQuestion: {item.question}\n{options}\nAnswer:"


def cloze_prompt(item: Item) -> str:
    return f"{HEADER}\n\nQuestion: {item.question}\nAnswer:"


@dataclass(frozen=True)
class ItemScores:
    """One item's choices scored both ways; `scores(variant)` gives the four numbers the prediction compares."""
    item: Item
    letter_logprobs: tuple[float, ...]            # ln p(" A") ... ln p(" D") after the letter prompt
    text_logprobs: tuple[tuple[float, ...], ...]  # per choice, ln p of each of its tokens after the cloze prompt
    text_bytes: tuple[int, ...]                   # UTF-8 bytes of " " + choice

    def scores(self, variant: str) -> np.ndarray:
        if variant == "letters":
            return np.array(self.letter_logprobs)
        summed = np.array([sum(lp) for lp in self.text_logprobs])
        return summed / np.array(self.text_bytes) if variant == "per_byte" else summed

    def predicted(self, variant: str) -> int:
        return int(np.argmax(self.scores(variant)))

    def correct(self, variant: str) -> bool:
        return self.predicted(variant) == self.item.answer


def _letter_ids(lm: LiveModel) -> list[list[int]]:
    return [token_ids(lm, " " + letter) for letter in LETTERS]


def _text_scores(lm: LiveModel, item: Item) -> tuple[tuple[tuple[float, ...], ...], tuple[int, ...]]:
    options = [token_ids(lm, " " + choice) for choice in item.choices]
    text_lp = score_prompts(lm, [token_ids(lm, cloze_prompt(item))], options)[0]
    return tuple(tuple(lp) for lp in text_lp), tuple(len((" " + c).encode("utf-8")) for c in item.choices)


def score_item(lm: LiveModel, item: Item) -> ItemScores:
    """Both prompts of one item scored: the letter tokens after the lettered prompt, each option after the cloze."""
    letter_lp = score_prompts(lm, [token_ids(lm, letter_prompt(item))], _letter_ids(lm))[0]
    return ItemScores(item, tuple(lp[0] for lp in letter_lp), *_text_scores(lm, item))


def score_set(lm: LiveModel, items: Sequence[Item],
              on_step: Callable[[int, int], None] = lambda done, total: None,
              should_stop: Callable[[], bool] = lambda: False) -> tuple[ItemScores, ...] | None:
    """Every item scored; None if stopped first (a partial accuracy would not be the benchmark's).

    The lettered prompts all share the header and all score the same four letter tokens, so they go through
    one call that runs the header once into a KV cache; the cloze options differ per item, so one call each.
    Progress counts 2 x len(items) steps: the lettered prompts, then the cloze ones.
    """
    total = 2 * len(items)
    letter_lp = score_prompts(lm, [token_ids(lm, letter_prompt(item)) for item in items], _letter_ids(lm),
                              on_item=lambda done, _: on_step(done, total), should_stop=should_stop)
    if len(letter_lp) < len(items):
        return None
    done = []
    for n, (item, letters) in enumerate(zip(items, letter_lp)):
        if should_stop():
            return None
        done.append(ItemScores(item, tuple(lp[0] for lp in letters), *_text_scores(lm, item)))
        on_step(len(items) + n + 1, total)
    return tuple(done)


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: unlike p +- z*sqrt(p(1-p)/n) it stays inside [0, 1] and does
    not collapse to a point at 0 or n correct, which matters for the small sets shown here."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Accuracy:
    variant: str
    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)


def accuracy(scored: Sequence[ItemScores], variant: str) -> Accuracy:
    return Accuracy(variant, sum(s.correct(variant) for s in scored), len(scored))


# Contamination: how the model reads a famous text and a paraphrase of it.

@dataclass(frozen=True)
class TextReading:
    """Per-token ln p of a text (its tokens after the first), with the summaries a contamination check reads."""
    ids: tuple[int, ...]
    logprobs: np.ndarray     # [T-1] ln p(token t | tokens before it), nats
    top1: np.ndarray         # [T-1] True where the token was the model's single most likely next token

    @property
    def perplexity(self) -> float:
        return float(np.exp(-self.logprobs.mean()))

    @property
    def top1_share(self) -> float:
        return float(self.top1.mean())

    def lowest(self, k_percent: float) -> np.ndarray:
        """Positions (into logprobs) of the k% least likely tokens, at least one."""
        count = max(1, math.ceil(len(self.logprobs) * k_percent / 100))
        return np.argsort(self.logprobs, kind="stable")[:count]

    def min_k(self, k_percent: float) -> float:
        """Min-K% Prob: the mean ln p of the k% least likely tokens (Shi et al. 2023). Closer to 0 = seen?"""
        return float(self.logprobs[self.lowest(k_percent)].mean())


def read_text(lm: LiveModel, text: str) -> TextReading:
    """One forward pass over the text; a text of one token has nothing to score (empty arrays)."""
    ids = token_ids(lm, text)
    if len(ids) < 2:
        return TextReading(tuple(ids), np.zeros(0), np.zeros(0, bool))
    losses = token_losses(lm, ids)
    return TextReading(losses.ids, -losses.nll.astype(np.float64), losses.ranks == 1)
