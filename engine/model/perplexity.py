"""Perplexity of a text under an intervention of the traced forward, cached by (tokens, intervention).

Many "inside the model" pages ask the same question: what does removing or changing this part cost the model
on this text? The answer is one number, the perplexity exp(mean negative log-likelihood of each next token),
measured against the model as it is. A result is small (one float per token), so it is kept in a bounded
process-wide cache shared by every session: a second reader asking for the same text and intervention, or
a slider that only reshapes the chart, runs no forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.model.live_model import LiveModel
from engine.model.traced import Interventions, trace
from engine.runtime.bounded import BoundedLRU

CACHE_ENTRIES = 256


@dataclass(frozen=True, eq=False)
class Perplexity:
    """How well a (possibly changed) model predicts each next token of a text."""
    ids: tuple[int, ...]
    interventions: Interventions
    token_nll: np.ndarray      # [T - 1] nats: -log p(token t+1 | tokens up to t)
    token_top1: np.ndarray     # [T - 1] bool: was the actual next token the model's top choice

    @property
    def mean_nll(self) -> float:
        return float(self.token_nll.mean()) if self.token_nll.size else float("nan")

    @property
    def perplexity(self) -> float:
        """exp(mean NLL): the number of equally likely choices with the same average surprise."""
        return float(np.exp(self.mean_nll))

    @property
    def top1_accuracy(self) -> float:
        return float(self.token_top1.mean()) if self.token_top1.size else float("nan")


_cache = BoundedLRU(CACHE_ENTRIES)   # shared by every session's thread


def scores_from_logits(ids: list[int] | tuple[int, ...], logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token NLL (nats) and top-1 hits of `ids[1:]` under `logits` [T, vocab] (row t predicts token t+1)."""
    if len(ids) < 2:
        return np.zeros(0, np.float32), np.zeros(0, bool)
    lg = torch.tensor(np.asarray(logits[:-1], dtype=np.float32))   # a copy: cached logits are read-only
    target = torch.tensor(ids[1:], dtype=torch.long)
    nll = torch.nn.functional.cross_entropy(lg, target, reduction="none").numpy()
    return nll, (lg.argmax(-1) == target).numpy()


def perplexity(lm: LiveModel, ids: list[int] | tuple[int, ...],
               interventions: Interventions = Interventions()) -> Perplexity:
    """Perplexity of `ids` (at least 2 tokens to score anything) under `interventions`, cached.

    The key holds the interventions themselves (a frozen dataclass): a `weight_transform` is keyed by its
    identity, so pass a module-level function (or the same object each time), not a new lambda per call.
    """
    key = (id(lm), tuple(int(i) for i in ids), interventions)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    logits = trace(lm, list(key[1]), interventions=interventions).logits
    nll, top1 = scores_from_logits(key[1], logits)
    nll.setflags(write=False)
    top1.setflags(write=False)
    result = Perplexity(ids=key[1], interventions=interventions, token_nll=nll, token_top1=top1)
    _cache.put(key, result)
    return result


def clear_cache() -> None:
    _cache.clear()
