"""Next-token distributions and step-by-step generation (greedy or sampled), with or without a KV cache.

The loop is written out rather than calling `model.generate`, so each step can be timed and shown,
and so caching can be switched off to compare.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode, decode_each, token_ids


@dataclass(frozen=True)
class NextToken:
    id: int
    text: str
    probability: float
    logit: float


@dataclass(frozen=True)
class Distribution:
    """The model's next-token distribution after a prompt."""
    prompt_ids: list[int]
    logits: np.ndarray         # [vocab] float32, raw
    probabilities: np.ndarray  # [vocab] float64, softmax(logits), sums to 1

    def top(self, lm: LiveModel, k: int) -> list[NextToken]:
        k = max(1, min(int(k), self.logits.size))
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        texts = decode_each(lm, [int(i) for i in order])
        return [NextToken(int(i), t, float(self.probabilities[i]), float(self.logits[i]))
                for i, t in zip(order, texts)]

    @property
    def entropy_bits(self) -> float:
        p = self.probabilities[self.probabilities > 0]
        return float(-(p * np.log2(p)).sum())


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max())
    return z / z.sum()


def next_token_distribution(lm: LiveModel, text: str) -> Distribution:
    ids = token_ids(lm, text)
    if not ids:
        raise ValueError("the prompt is empty")
    with model_work():
        logits = lm.model(torch.tensor([ids]), use_cache=False).logits[0, -1].float().numpy()
    return Distribution(prompt_ids=ids, logits=logits, probabilities=softmax(logits))


@dataclass(frozen=True)
class Generation:
    prompt_ids: list[int]
    new_ids: list[int]
    new_text: str                  # without the final end-of-text token, when generation stopped on it
    step_seconds: list[float]      # wall time of each step; step 0 includes the prompt (prefill)
    chosen_probabilities: list[float]
    stopped_at_eos: bool

    @property
    def tokens_per_second(self) -> float:
        decode_steps = self.step_seconds[1:]  # the first step is the prefill
        return len(decode_steps) / sum(decode_steps) if decode_steps and sum(decode_steps) > 0 else 0.0


def generate(lm: LiveModel, text: str, max_new_tokens: int = 20, *, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int = 0, use_cache: bool = True,
             stop_at_eos: bool = True) -> Generation:
    """Greedy when temperature is 0, otherwise sampled with a private, seeded generator.

    Order of operations as in common samplers: temperature, then top-k, then top-p.
    """
    from transformers import DynamicCache

    ids = token_ids(lm, text)
    if not ids:
        raise ValueError("the prompt is empty")
    eos = lm.tokenizer.eos_token_id
    rng = torch.Generator().manual_seed(int(seed))
    cache = DynamicCache(config=lm.model.config) if use_cache else None
    sequence, new_ids, times, chosen_p = list(ids), [], [], []
    feed = list(ids)
    stopped = False
    for _ in range(max(0, int(max_new_tokens))):
        with model_work():   # the gate is passed step by step, so a long generation lets other readers in
            started = time.perf_counter()
            out = lm.model(torch.tensor([feed]), past_key_values=cache, use_cache=use_cache)
            logits = out.logits[0, -1].float()
            next_id, prob = _choose(logits, temperature, top_k, top_p, rng)
            times.append(time.perf_counter() - started)
        new_ids.append(next_id)
        chosen_p.append(prob)
        sequence.append(next_id)
        feed = [next_id] if use_cache else sequence
        if stop_at_eos and next_id == eos:
            stopped = True
            break
    text_ids = new_ids[:-1] if stopped else new_ids  # the end-of-text marker is not part of the text
    return Generation(prompt_ids=ids, new_ids=new_ids, new_text=decode(lm, text_ids),
                      step_seconds=times, chosen_probabilities=chosen_p, stopped_at_eos=stopped)


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature-scaled logits with the tokens outside top-k / top-p set to -inf."""
    scaled = logits / max(float(temperature), 1e-6)
    if top_k and 0 < top_k < scaled.numel():
        kth = torch.topk(scaled, int(top_k)).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, descending=True)
        cumulative = torch.softmax(sorted_logits, -1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, -1) >= top_p  # keep until p is reached
        scaled = scaled.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return scaled


def _choose(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
            rng: torch.Generator) -> tuple[int, float]:
    probs = torch.softmax(logits.double(), -1)
    if temperature <= 0:
        idx = int(torch.argmax(logits))
        return idx, float(probs[idx])
    filtered = torch.softmax(filter_logits(logits, temperature, top_k, top_p).double(), -1)
    idx = int(torch.multinomial(filtered, 1, generator=rng))
    return idx, float(probs[idx])
