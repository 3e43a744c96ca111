"""Speculative decoding on the live model, greedy and exact: a cheap draft proposes k tokens, the full model
checks all of them in one pass, and the output is the full model's own greedy text.

Two drafts, both without a second model:
- prompt lookup: the k tokens that followed the most recent earlier occurrence of the context's last n-gram
  (shorter n-grams are tried when the n-gram never occurred before, as transformers' prompt_lookup does);
  it costs a scan of a list, nothing on the model;
- early exit: the model's own first L layers, then the final norm and lm_head (`engine.model.traced` with
  Interventions(exit_layer=L)), greedy for k tokens. The traced pass has no KV cache, so each drafted token
  re-reads the whole context through L layers: this draft is far from free on a CPU.

Verification, one pass of the full model (with its KV cache) over [last token, d_1 .. d_k]: position i gives
the full model's greedy token t_i after d_1..d_i. Accept the longest prefix with d_i = t_i (say a tokens),
then take t_a, the full model's own token at the first mismatch (or after all k, a bonus token). Every round
adds a+1 tokens, each exactly what greedy decoding would have chosen, so the text is greedy's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.model.traced import Interventions, trace
from engine.serving.prompt_cache import shared_prefix_length

LOOKUP = "lookup"
EARLY_EXIT = "early-exit"
DRAFTERS = (LOOKUP, EARLY_EXIT)


def lookup_draft(context: list[int], ngram: int, k: int) -> list[int]:
    """Prompt-lookup drafting: the up to k tokens that followed the most recent earlier occurrence of the last
    `ngram` tokens of `context` (then of the last ngram-1, ... 1 tokens); [] when none occurred before."""
    if k <= 0:
        return []
    for size in range(min(ngram, len(context) - 1), 0, -1):
        tail = context[-size:]
        for start in range(len(context) - size - 1, -1, -1):   # most recent first, never the tail itself
            if context[start:start + size] == tail:
                follow = context[start + size:start + size + k]
                if follow:
                    return follow
    return []


def early_exit_draft(lm: LiveModel, context: list[int], exit_layer: int, k: int) -> list[int]:
    """k greedy tokens from the model cut after `exit_layer` layers (final norm and lm_head applied there)."""
    drafted, sequence = [], list(context)
    for _ in range(k):
        logits = trace(lm, sequence, interventions=Interventions(exit_layer=exit_layer)).logits[-1]
        token = int(logits.argmax())
        drafted.append(token)
        sequence.append(token)
    return drafted


def accepted_prefix(drafted: list[int], targets: list[int]) -> int:
    """How many drafted tokens greedy accepts: the longest prefix equal to the full model's own choices."""
    return shared_prefix_length(drafted, targets)


@dataclass(frozen=True)
class Round:
    """One draft-then-verify round."""
    drafted: tuple[int, ...]     # what the draft proposed
    accepted: int                # how many of them the full model agreed with (a prefix)
    model_token: int             # the full model's own token after the accepted prefix
    draft_s: float               # wall time spent drafting
    verify_s: float              # wall time of the full model's pass over the drafted tokens

    @property
    def proposed(self) -> int:
        return len(self.drafted)

    @property
    def new_ids(self) -> list[int]:
        return list(self.drafted[:self.accepted]) + [self.model_token]

    @property
    def seconds(self) -> float:
        return self.draft_s + self.verify_s


@dataclass(frozen=True)
class SpeculativeRun:
    prompt_ids: tuple[int, ...]
    drafter: str
    k: int
    rounds: tuple[Round, ...]
    prefill_s: float             # the full model reading the prompt once, before the first round
    new_ids: tuple[int, ...]     # the output, cut at max_new_tokens and after end-of-text
    stopped_at_eos: bool
    stopped_early: bool = False  # a stop request or the time budget ended it

    @property
    def proposed(self) -> int:
        return sum(r.proposed for r in self.rounds)

    @property
    def accepted(self) -> int:
        return sum(r.accepted for r in self.rounds)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else float("nan")

    @property
    def draft_s(self) -> float:
        return sum(r.draft_s for r in self.rounds)

    @property
    def verify_s(self) -> float:
        return sum(r.verify_s for r in self.rounds)

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.draft_s + self.verify_s

    @property
    def full_model_passes(self) -> int:
        """Passes of the full model after the prefill: one per round (greedy needs one per token)."""
        return len(self.rounds)


def speculative_generate(lm: LiveModel, prompt_ids: list[int], max_new_tokens: int, *, drafter: str = LOOKUP,
                         k: int = 4, ngram: int = 2, exit_layer: int = 8, stop_at_eos: bool = True,
                         on_round: Callable[[int, int], None] | None = None,
                         should_stop: Callable[[], bool] | None = None) -> SpeculativeRun:
    """Greedy speculative decoding of up to `max_new_tokens` tokens with `drafter` proposing up to k per round."""
    from transformers import DynamicCache

    if not prompt_ids:
        raise ValueError("the prompt is empty")
    if drafter not in DRAFTERS:
        raise ValueError(f"drafter must be one of {DRAFTERS}, got {drafter!r}")
    eos = lm.tokenizer.eos_token_id if stop_at_eos else None
    cache = DynamicCache(config=lm.model.config)   # holds every token of `sequence` but the last
    sequence = list(prompt_ids)
    started = time.perf_counter()
    if len(sequence) > 1:
        with model_work():
            lm.model(torch.tensor([sequence[:-1]]), past_key_values=cache, use_cache=True)
    prefill_s = time.perf_counter() - started
    rounds, new_ids, stopped, early = [], [], False, False
    while len(new_ids) < max_new_tokens and not stopped:
        if should_stop is not None and should_stop():
            early = True
            break
        budget = min(k, max_new_tokens - len(new_ids) - 1)   # a round adds up to k+1 tokens
        t0 = time.perf_counter()
        if budget <= 0:
            drafted = []
        elif drafter == LOOKUP:
            drafted = lookup_draft(sequence, ngram, budget)
        else:
            drafted = early_exit_draft(lm, sequence, exit_layer, budget)
        t1 = time.perf_counter()
        with model_work():
            logits = lm.model(torch.tensor([[sequence[-1]] + drafted]), past_key_values=cache,
                              use_cache=True).logits[0]
            targets = [int(t) for t in logits.argmax(dim=-1)]
            accepted = accepted_prefix(drafted, targets)
            rejected = len(drafted) - accepted
            if rejected:   # keep the accepted tokens' keys and values, drop the rejected ones
                cache.crop(-rejected)
        t2 = time.perf_counter()
        done = Round(drafted=tuple(drafted), accepted=accepted, model_token=targets[accepted],
                     draft_s=t1 - t0, verify_s=t2 - t1)
        rounds.append(done)
        for token in done.new_ids:
            new_ids.append(token)
            sequence.append(token)
            if eos is not None and token == eos:
                stopped = True
                break
        if on_round is not None:
            on_round(len(new_ids), max_new_tokens)
    return SpeculativeRun(prompt_ids=tuple(prompt_ids), drafter=drafter, k=k, rounds=tuple(rounds),
                          prefill_s=prefill_s, new_ids=tuple(new_ids[:max_new_tokens]), stopped_at_eos=stopped,
                          stopped_early=early)


@dataclass(frozen=True)
class Comparison:
    """Plain greedy decoding and speculative decoding of the same prompt, both timed on this machine."""
    greedy_ids: tuple[int, ...]
    greedy_s: float              # engine.decoding.generation.generate's summed step times (prefill included)
    speculative: SpeculativeRun
    measured_at: float

    @property
    def identical(self) -> bool:
        return tuple(self.speculative.new_ids) == tuple(self.greedy_ids)

    @property
    def identical_so_far(self) -> bool:
        """The speculative output equals greedy's as far as it got (a stopped run is shorter)."""
        got = tuple(self.speculative.new_ids)
        return got == tuple(self.greedy_ids[:len(got)])

    @property
    def first_difference(self) -> int | None:
        for i, (a, b) in enumerate(zip(self.greedy_ids, self.speculative.new_ids)):
            if a != b:
                return i
        return None if len(self.greedy_ids) == len(self.speculative.new_ids) else min(
            len(self.greedy_ids), len(self.speculative.new_ids))

    @property
    def speedup(self) -> float:
        """Greedy's time over speculative decoding's: above 1 is faster, below 1 slower."""
        return self.greedy_s / self.speculative.total_s if self.speculative.total_s > 0 else float("nan")


def compare(lm: LiveModel, text: str, max_new_tokens: int, *, drafter: str = LOOKUP, k: int = 4, ngram: int = 2,
            exit_layer: int = 8, on_progress: Callable[[float, str], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> Comparison:
    """Greedy (engine.decoding.generation.generate, temperature 0) then speculative decoding, same prompt and length."""
    from engine.decoding.generation import generate
    from engine.tokens.offsets import token_ids

    report = on_progress or (lambda fraction, message: None)
    report(0.0, "Greedy decoding, one full-model pass per token...")
    greedy = generate(lm, text, max_new_tokens, temperature=0.0)
    report(0.5, "Speculative decoding...")

    def on_round(done: int, total: int) -> None:
        report(0.5 + 0.5 * min(done, total) / total, f"Speculative decoding: {done} of {total} tokens")

    run = speculative_generate(lm, token_ids(lm, text), max_new_tokens, drafter=drafter, k=k, ngram=ngram,
                               exit_layer=exit_layer, on_round=on_round, should_stop=should_stop)
    return Comparison(greedy_ids=tuple(greedy.new_ids), greedy_s=sum(greedy.step_seconds), speculative=run,
                      measured_at=time.time())


@dataclass(frozen=True)
class FirstRound:
    """The first round, checked at once (one draft, one full-model pass): what the page shows before timing."""
    drafted: tuple[int, ...]
    targets: tuple[int, ...]           # the full model's own greedy token at each drafted position
    draft_probs: tuple[float, ...]     # the full model's probability of each drafted token there

    @property
    def accepted(self) -> int:
        return accepted_prefix(list(self.drafted), list(self.targets))


def first_round(lm: LiveModel, prompt_ids: list[int], drafter: str, k: int, ngram: int, exit_layer: int) -> FirstRound:
    drafted = (lookup_draft(list(prompt_ids), ngram, k) if drafter == LOOKUP
               else early_exit_draft(lm, list(prompt_ids), exit_layer, k))
    if not drafted:
        return FirstRound((), (), ())
    logits = torch.from_numpy(np.array(trace(lm, list(prompt_ids) + drafted).logits[len(prompt_ids) - 1:-1]))
    probs = torch.softmax(logits, dim=-1)
    return FirstRound(tuple(drafted), tuple(int(i) for i in probs.argmax(-1)),
                      tuple(float(probs[i, t]) for i, t in enumerate(drafted)))
