"""Repetition penalties on real logits, and greedy generation with one applied at every step.

Three kinds are in use:
- multiplicative (CTRL, Keskar et al. 2019; transformers' `repetition_penalty`): every token already in the
  context has its logit divided by theta if positive and multiplied by theta if negative, so the penalty
  always lowers it (dividing a negative logit would raise it: the sign matters);
- frequency (OpenAI's `frequency_penalty`): logit - alpha x (times the token has appeared);
- presence (OpenAI's `presence_penalty`): logit - beta if the token has appeared at all.
Which tokens count as "already seen" is a choice: the whole context (transformers counts the prompt too) or
only the generated tokens (OpenAI's penalties count generated text).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

KINDS = ("multiplicative", "frequency", "presence")


@dataclass(frozen=True)
class Penalty:
    kind: str = "multiplicative"
    strength: float = 1.0          # theta for multiplicative (1 = off); alpha or beta for the additive ones (0 = off)
    count_prompt: bool = True      # whether the prompt's tokens count as already seen

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown penalty {self.kind!r}; known: {KINDS}")

    @property
    def is_off(self) -> bool:
        return self.strength == (1.0 if self.kind == "multiplicative" else 0.0)


def penalized(logits: np.ndarray, seen: list[int], penalty: Penalty) -> np.ndarray:
    """`logits` [vocab] after the penalty for the `seen` tokens (a new array; the input is left alone)."""
    out = np.array(logits, dtype=np.float32, copy=True)
    counts = Counter(int(t) for t in seen)
    if not counts:
        return out
    ids = np.fromiter(counts, dtype=np.int64)
    if penalty.kind == "multiplicative":
        theta = np.float32(penalty.strength)
        values = out[ids]
        out[ids] = np.where(values > 0, values / theta, values * theta)
    elif penalty.kind == "frequency":
        out[ids] -= np.float32(penalty.strength) * np.fromiter(counts.values(), dtype=np.float32)
    else:
        out[ids] -= np.float32(penalty.strength)
    return out


@dataclass(frozen=True)
class PenalizedRun:
    new_ids: tuple[int, ...]
    first_logits: np.ndarray        # [vocab] the first step's logits before the penalty
    first_seen: tuple[int, ...]     # the tokens the penalty counted at the first step


def generate_with_penalty(lm: LiveModel, prompt_ids: list[int], steps: int, penalty: Penalty,
                          stop_at_eos: bool = True) -> PenalizedRun:
    """Greedy decoding with the penalty applied to the logits before each argmax."""
    from transformers import DynamicCache

    eos = lm.tokenizer.eos_token_id
    cache = DynamicCache(config=lm.model.config)
    feed, new_ids, first = list(prompt_ids), [], None
    for _ in range(steps):
        with model_work():
            logits = lm.model(torch.tensor([feed]), past_key_values=cache, use_cache=True).logits[0, -1].float().numpy()
        seen = (list(prompt_ids) if penalty.count_prompt else []) + new_ids
        if first is None:
            first = (logits, tuple(seen))
        chosen = int(np.argmax(penalized(logits, seen, penalty)))
        new_ids.append(chosen)
        feed = [chosen]
        if stop_at_eos and chosen == eos:
            break
    return PenalizedRun(new_ids=tuple(new_ids), first_logits=first[0] if first else np.zeros(0, np.float32),
                        first_seen=first[1] if first else ())
