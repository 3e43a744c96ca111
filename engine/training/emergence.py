"""Emergence or mirage: one model's arithmetic scored by two metrics, as Schaeffer et al. (2023) argued.

The live model is asked k-digit sums (or differences, or products by one digit) in a few-shot prompt, and its
probability of the correct answer is read by teacher forcing: the prompt and the correct answer go through the
model in one forward pass, and at each answer position the probability the model gives the correct next digit
is read off. SmolLM2's tokenizer writes every digit as its own token (measured by `answer_tokens`), so an answer of
L digits is L predictions.

Two scores from the same numbers:
- per-token: the mean probability of the correct digit (and how often it is the model's top choice); it
  changes smoothly with k;
- exact match: the probability that the whole answer comes out right, the product of its digits'
  probabilities, about p^L. A product of L numbers below 1 falls off a cliff as L grows, even when each factor
  changes smoothly: a nonlinear metric makes a smooth change look sudden.

Exact match here counts the answer's digits only, not where the model would stop. "Greedy exact" = every digit
is the model's top choice given the correct digits before it, which is exactly when greedy decoding writes the
answer.

Problems are drawn from a generator seeded by (seed, operation, k, index), so the same link shows the same
problems; the few-shot examples come from another stream of the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.decoding.loss import token_losses
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode_each, token_ids

OPERATIONS = {"add": "+", "sub": "-", "mul": "×"}
OPERATION_NAMES = {"add": "addition", "sub": "subtraction", "mul": "multiplication by one digit"}
_CODES = {"add": 1, "sub": 2, "mul": 3}
MAX_DIGITS = 6
SHOTS = 3


@dataclass(frozen=True)
class Problem:
    operation: str
    digits: int
    a: int
    b: int

    @property
    def answer(self) -> int:
        return {"add": self.a + self.b, "sub": self.a - self.b, "mul": self.a * self.b}[self.operation]

    @property
    def question(self) -> str:
        return f"{self.a} {OPERATIONS[self.operation]} {self.b} ="


def _operands(operation: str, digits: int, rng: np.random.Generator) -> tuple[int, int]:
    low, high = 10 ** (digits - 1), 10 ** digits
    a = int(rng.integers(low, high))
    b = int(rng.integers(2, 10)) if operation == "mul" else int(rng.integers(low, high))
    if operation == "sub" and b > a:
        a, b = b, a
    return a, b


def problem(operation: str, digits: int, index: int, seed: int = 0) -> Problem:
    """The index-th test problem with k = digits (operands of exactly k digits; a one-digit factor for mul)."""
    if operation not in OPERATIONS or not 1 <= digits <= MAX_DIGITS:
        raise ValueError(f"operation in {tuple(OPERATIONS)} and 1 <= digits <= {MAX_DIGITS}")
    rng = np.random.default_rng([int(seed), _CODES[operation], digits, int(index), 0])
    return Problem(operation, digits, *_operands(operation, digits, rng))


def prompt_for(p: Problem, seed: int = 0) -> str:
    """A few-shot prompt: SHOTS solved examples with operands of the same size, then the question and a space
    (the tokenizer writes the space before a number as its own token, so the answer is digits only)."""
    rng = np.random.default_rng([int(seed), _CODES[p.operation], p.digits, 1_000_003])
    lines = []
    for _ in range(SHOTS):
        example = Problem(p.operation, p.digits, *_operands(p.operation, p.digits, rng))
        lines.append(f"{example.question} {example.answer}")
    return "\n".join(lines + [p.question]) + " "


@dataclass(frozen=True, eq=False)
class Scored:
    problem: Problem
    prompt: str
    answer_ids: tuple[int, ...]
    answer_pieces: tuple[str, ...]   # the tokenizer's pieces of the answer (one per digit for SmolLM2)
    token_probs: np.ndarray          # [L] probability of each correct answer token, given the correct ones before
    top_correct: np.ndarray          # [L] bool: was it the model's top choice
    top_pieces: tuple[str, ...]      # the model's top choice at each answer position

    @property
    def exact_probability(self) -> float:
        """P(the whole answer is produced) = the product of its tokens' probabilities (chain rule)."""
        return float(np.prod(self.token_probs))

    @property
    def mean_token_probability(self) -> float:
        return float(self.token_probs.mean())

    @property
    def token_accuracy(self) -> float:
        return float(self.top_correct.mean())

    @property
    def greedy_exact(self) -> bool:
        return bool(self.top_correct.all())


def answer_tokens(lm: LiveModel, answer: str) -> list[int]:
    return token_ids(lm, answer)


def score(lm: LiveModel, p: Problem, seed: int = 0) -> Scored:
    """Teacher forcing in one forward pass: prompt + correct answer, probabilities read at the answer positions."""
    prompt = prompt_for(p, seed)
    prompt_ids = token_ids(lm, prompt)
    answer_ids = answer_tokens(lm, str(p.answer))
    losses = token_losses(lm, prompt_ids + answer_ids)   # position t scores ids[t + 1]
    start = len(prompt_ids) - 1
    span = slice(start, start + len(answer_ids))
    return Scored(problem=p, prompt=prompt, answer_ids=tuple(answer_ids),
                  answer_pieces=tuple(decode_each(lm, answer_ids)), token_probs=np.exp(-losses.nll[span]),
                  top_correct=losses.ranks[span] == 1,
                  top_pieces=tuple(decode_each(lm, [int(i) for i in losses.top_ids[span, 0]])))


@dataclass(frozen=True)
class DigitsRow:
    digits: int
    problems: int
    answer_tokens: float          # mean tokens per answer
    mean_token_probability: float
    token_accuracy: float
    exact_probability: float      # mean over problems of the product
    greedy_exact: float           # share of problems whose every digit is the top choice


def summarize(digits: int, scored: list[Scored]) -> DigitsRow:
    return DigitsRow(digits=digits, problems=len(scored),
                     answer_tokens=float(np.mean([len(s.answer_ids) for s in scored])),
                     mean_token_probability=float(np.mean([s.mean_token_probability for s in scored])),
                     token_accuracy=float(np.mean([s.token_accuracy for s in scored])),
                     exact_probability=float(np.mean([s.exact_probability for s in scored])),
                     greedy_exact=float(np.mean([s.greedy_exact for s in scored])))


def sweep(lm: LiveModel, operation: str, per_digit: int, seed: int = 0,
          on_problem: Callable[[int, int], None] = lambda done, total: None,
          should_stop: Callable[[], bool] = lambda: False) -> tuple[DigitsRow, ...]:
    """Every k from 1 to MAX_DIGITS, `per_digit` problems each; stops early (keeping whole rows) if asked."""
    rows, total, done = [], MAX_DIGITS * per_digit, 0
    for digits in range(1, MAX_DIGITS + 1):
        scored = []
        for index in range(per_digit):
            if should_stop():
                return tuple(rows)
            scored.append(score(lm, problem(operation, digits, index, seed), seed))
            done += 1
            on_problem(done, total)
        rows.append(summarize(digits, scored))
    return tuple(rows)
