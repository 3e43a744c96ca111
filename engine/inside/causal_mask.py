"""The causal mask, measured on SmolLM2: its attention with the mask (as trained) and with the mask removed (a
traced-forward intervention), where the weight goes, and what the model predicts after the text either way.

Indices are 0-based (layers 0..29, heads 0..8, positions 0..T-1). Both passes record "probs" in every layer,
so both form their scores explicitly (engine/model/traced.py); with the mask on, the scores of later keys are -inf
before the softmax, so their weights come out as exactly 0.0, not merely small.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.decoding.generation import softmax
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode_each
from engine.model.traced import Interventions, trace

TOP_NEXT = 8   # next-token guesses kept per pass: all the page draws, and the [vocab] logits are not kept


def mask_matrix(length: int) -> np.ndarray:
    """The additive causal mask M [T, T]: 0 where key j <= query i, -inf where j > i (a later token)."""
    return np.where(np.triu(np.ones((length, length), dtype=bool), 1), -np.inf, 0.0)


@dataclass(frozen=True, eq=False)
class NextGuesses:
    """The most likely next tokens after the whole text, most likely first."""
    ids: tuple[int, ...]
    texts: tuple[str, ...]
    probabilities: np.ndarray   # [TOP_NEXT] float64, softmax over the whole vocabulary
    logits: np.ndarray          # [TOP_NEXT] float32


@dataclass(frozen=True, eq=False)
class MaskComparison:
    """One text through SmolLM2 twice: as trained, and with the causal mask removed. Arrays are read-only."""
    ids: tuple[int, ...]
    tokens: list[str]
    masked: np.ndarray          # [layers, heads, T, T] attention weights, causal mask on
    unmasked: np.ndarray        # [layers, heads, T, T] attention weights, every position sees every position
    next_masked: NextGuesses
    next_unmasked: NextGuesses

    @property
    def length(self) -> int:
        return len(self.ids)


def _guesses(lm: LiveModel, last_logits: np.ndarray, top: int) -> NextGuesses:
    probabilities = softmax(last_logits)
    order = np.argsort(-probabilities, kind="stable")[:top]
    ids = tuple(int(i) for i in order)
    return NextGuesses(ids=ids, texts=tuple(decode_each(lm, list(ids))), probabilities=probabilities[order],
                       logits=np.asarray(last_logits[order], dtype=np.float32))


def compare_mask(lm: LiveModel, ids: list[int] | tuple[int, ...], top: int = TOP_NEXT) -> MaskComparison:
    """Attention weights of every head with and without the causal mask, and the next-token guesses."""
    if not ids:
        raise ValueError("the text is empty")
    ids = tuple(int(i) for i in ids)
    masked = trace(lm, list(ids), record={"probs"})
    unmasked = trace(lm, list(ids), record={"probs"}, interventions=Interventions(causal_mask=False))
    return MaskComparison(ids=ids, tokens=decode_each(lm, list(ids)), masked=masked["probs"],
                          unmasked=unmasked["probs"], next_masked=_guesses(lm, masked.logits[-1], top),
                          next_unmasked=_guesses(lm, unmasked.logits[-1], top))


def later_share(attentions: np.ndarray) -> np.ndarray:
    """Mean weight put on keys AFTER the query, averaged over the queries ([..., T, T] -> [...]).

    A causal decoder gives exactly 0. The last query has no later keys and counts as 0, so a bidirectional
    model over T tokens can reach at most (T - 1) / T.
    """
    length = attentions.shape[-1]
    later = np.triu(np.ones((length, length), dtype=bool), 1)
    return (attentions * later).sum(-1, dtype=np.float64).mean(-1)


def first_token_share(attentions: np.ndarray) -> np.ndarray:
    """Mean weight on the first token over queries 1..T-1 ([..., T, T] -> [...]); needs T >= 2.

    Query 0 is left out: under the mask it can only see itself, so its weight on token 0 is always 1.
    """
    if attentions.shape[-1] < 2:
        raise ValueError("the first-token share needs at least two tokens")
    return attentions[..., 1:, 0].mean(-1, dtype=np.float64)


def even_first_token_share(length: int, causal: bool) -> float:
    """The first-token share if every query spread its weight evenly over the keys it may read: under the mask
    query i reads i + 1 keys; without it every query reads all `length` keys."""
    if length < 2:
        raise ValueError("needs at least two tokens")
    return float(np.mean(1.0 / np.arange(2, length + 1))) if causal else 1.0 / length


def next_token_share(attentions: np.ndarray) -> np.ndarray:
    """Mean weight each query i puts on key i + 1, the very token it is trained to predict ([..., T, T] -> [...]).

    Under the mask it is exactly 0; without the mask a head that reads the next token hands over the answer.
    Needs T >= 2 (the last query has no next token and is left out).
    """
    length = attentions.shape[-1]
    if length < 2:
        raise ValueError("the next-token share needs at least two tokens")
    return attentions[..., np.arange(length - 1), np.arange(1, length)].mean(-1, dtype=np.float64)
