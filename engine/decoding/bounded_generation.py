"""Greedy generation bounded in tokens AND in wall-clock time, saying which bound ended it.

Pages that run several generations in a row (an answer, then a critique, then a revision) must never hang on a
slow, busy CPU: each generation gets a token limit and a time budget, and the reader is told whether the text
ended its turn by itself, hit the token limit, ran out of time, or was stopped. The loop uses a KV cache and the
shared model read-only; each step passes the CPU gate on its own, so other readers are served in between.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode, token_ids

END_OF_TURN, TOKEN_LIMIT, TIME_LIMIT, STOPPED = "ended its turn", "token limit", "time limit", "stopped"


@dataclass(frozen=True)
class BoundedGeneration:
    prompt: str
    prompt_tokens: int
    new_ids: tuple[int, ...]        # without the end-of-turn token
    text: str
    ended_by: str                   # END_OF_TURN, TOKEN_LIMIT, TIME_LIMIT or STOPPED
    seconds: float
    max_new_tokens: int
    budget_s: float


def generate_bounded(lm: LiveModel, prompt: str, max_new_tokens: int, budget_s: float,
                     should_stop: Callable[[], bool] = lambda: False) -> BoundedGeneration:
    """Greedy continuation of `prompt`: at most `max_new_tokens` tokens and about `budget_s` seconds.

    The time is checked before every step, so one step (a fraction of a second) is the most it can overrun.
    """
    from transformers import DynamicCache

    ids = token_ids(lm, prompt)
    if not ids:
        raise ValueError("the prompt is empty")
    eos = lm.tokenizer.eos_token_id
    cache = DynamicCache(config=lm.model.config)
    started = time.perf_counter()
    feed, new_ids, ended_by = list(ids), [], TOKEN_LIMIT
    for _ in range(max(0, int(max_new_tokens))):
        if should_stop():
            ended_by = STOPPED
            break
        if time.perf_counter() - started > budget_s:
            ended_by = TIME_LIMIT
            break
        with model_work():
            logits = lm.model(torch.tensor([feed]), past_key_values=cache, use_cache=True).logits[0, -1]
            next_id = int(torch.argmax(logits))
        if next_id == eos:
            ended_by = END_OF_TURN
            break
        new_ids.append(next_id)
        feed = [next_id]
    return BoundedGeneration(prompt, len(ids), tuple(new_ids), decode(lm, new_ids), ended_by,
                             time.perf_counter() - started, int(max_new_tokens), float(budget_s))
