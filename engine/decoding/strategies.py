"""Decoding strategies on the live model, with the trace a page draws: greedy step by step with its
alternatives and margins, beam search with its whole tree, and repetition penalties on real logits.

Greedy and beam search are deterministic: each step runs the model on the sequences so far and chooses by
log-probability. Beam search keeps, at every step, the `width` best continuations of any live beam by
cumulative log-probability (the global top-`width` over beams x vocabulary, which is what transformers'
`num_beams` search keeps while no beam has ended), and records every candidate it considered so the page
can grey out the pruned branches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

ALTERNATIVES = 5


@dataclass(frozen=True)
class GreedyStep:
    chosen: int
    logprob: float               # ln p of the chosen token
    top_ids: tuple[int, ...]     # the model's favourites at this step, best first (chosen is the first)
    top_probs: tuple[float, ...]

    @property
    def margin(self) -> float:
        """How far ahead the winner was: p(top 1) - p(top 2). A small margin is a near coin flip."""
        return self.top_probs[0] - self.top_probs[1]


@dataclass(frozen=True)
class GreedyTrace:
    prompt_ids: tuple[int, ...]
    steps: tuple[GreedyStep, ...]
    stopped_at_eos: bool

    @property
    def new_ids(self) -> list[int]:
        return [s.chosen for s in self.steps]

    @property
    def logprob(self) -> float:
        return float(sum(s.logprob for s in self.steps))


def _last_logprobs(lm: LiveModel, sequences: list[list[int]]) -> torch.Tensor:
    """Log-probabilities of the next token after each of several equal-length sequences: [n, vocab]."""
    with model_work():
        logits = lm.model(torch.tensor(sequences), use_cache=False).logits[:, -1].float()
    return torch.log_softmax(logits, dim=-1)


def greedy_trace(lm: LiveModel, prompt_ids: list[int], steps: int, stop_at_eos: bool = True) -> GreedyTrace:
    """Always the most likely token, `steps` times, keeping each step's favourites."""
    from transformers import DynamicCache

    eos = lm.tokenizer.eos_token_id
    cache = DynamicCache(config=lm.model.config)   # this call's own cache: each step feeds one new token
    feed, taken, stopped = list(prompt_ids), [], False
    for _ in range(steps):
        with model_work():
            logits = lm.model(torch.tensor([feed]), past_key_values=cache, use_cache=True).logits[0, -1].float()
        top = torch.log_softmax(logits, dim=-1).topk(ALTERNATIVES)
        chosen = int(top.indices[0])
        taken.append(GreedyStep(chosen=chosen, logprob=float(top.values[0]),
                                top_ids=tuple(int(i) for i in top.indices),
                                top_probs=tuple(float(p) for p in top.values.exp())))
        feed = [chosen]
        if stop_at_eos and chosen == eos:
            stopped = True
            break
    return GreedyTrace(prompt_ids=tuple(prompt_ids), steps=tuple(taken), stopped_at_eos=stopped)


def repeated_spans(ids: list[int], min_size: int = 2, min_repeats: int = 2) -> list[tuple[int, int, int]]:
    """Loops: (start, size, repeats) where the block ids[start:start+size] occurs `repeats` >= `min_repeats`
    times back to back. Greedy decoding of a small model often falls into such a loop and never leaves it."""
    found, start = [], 0
    while start < len(ids):
        best = None
        for size in range(min_size, (len(ids) - start) // min_repeats + 1):
            block, repeats = ids[start:start + size], 1
            while ids[start + repeats * size:start + (repeats + 1) * size] == block:
                repeats += 1
            if repeats >= min_repeats and (best is None or size * repeats > best[1] * best[2]):
                best = (start, size, repeats)
        if best:
            found.append(best)
            start = best[0] + best[1] * best[2]
        else:
            start += 1
    return found


# --- beam search ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BeamNode:
    """One candidate token the search considered at one step."""
    step: int                  # 0 = the first new token
    parent: int                # index of the parent node in BeamResult.nodes, -1 for the prompt
    token: int
    logprob: float             # of this token given its beam
    cumulative: float          # of the whole beam up to and including this token
    kept: bool                 # survived the cut to `width` beams
    finished: bool = False     # the token is end-of-text: the beam ends here


@dataclass(frozen=True)
class BeamResult:
    prompt_ids: tuple[int, ...]
    width: int
    length_penalty: float
    nodes: tuple[BeamNode, ...]
    hypotheses: tuple[tuple[int, ...], ...]     # node-index paths of every finished or final beam
    best: int                                    # index into hypotheses

    def tokens(self, hypothesis: int) -> list[int]:
        return [self.nodes[i].token for i in self.hypotheses[hypothesis]]

    def logprob(self, hypothesis: int) -> float:
        return self.nodes[self.hypotheses[hypothesis][-1]].cumulative

    def score(self, hypothesis: int) -> float:
        return length_normalised(self.logprob(hypothesis), len(self.hypotheses[hypothesis]), self.length_penalty)

    @property
    def best_tokens(self) -> list[int]:
        return self.tokens(self.best)


def length_normalised(logprob: float, length: int, length_penalty: float) -> float:
    """transformers' beam score: sum of log-probabilities / length ** length_penalty. A penalty above 0 favours
    longer beams (their larger negative sum is divided by more); 0 ranks by log-probability alone."""
    return logprob / (max(length, 1) ** length_penalty)


def beam_search(lm: LiveModel, prompt_ids: list[int], width: int, steps: int, length_penalty: float = 1.0,
                stop_at_eos: bool = True) -> BeamResult:
    """Beam search of `width` beams for up to `steps` new tokens, keeping the whole tree."""
    eos = lm.tokenizer.eos_token_id if stop_at_eos else None
    nodes: list[BeamNode] = []
    beams: list[tuple[list[int], float]] = [([], 0.0)]      # (node path, cumulative log-probability)
    finished: list[list[int]] = []
    for step in range(steps):
        sequences = [list(prompt_ids) + [nodes[i].token for i in path] for path, _ in beams]
        logprobs = _last_logprobs(lm, sequences)
        candidates = []   # (cumulative, beam index, token, logprob)
        for b, (path, cumulative) in enumerate(beams):
            top = logprobs[b].topk(width)
            candidates += [(cumulative + float(v), b, int(t), float(v)) for v, t in zip(top.values, top.indices)]
        candidates.sort(key=lambda c: -c[0])
        # As transformers does: an end-of-text among the `width` best candidates finishes a hypothesis; the
        # best other candidates fill the `width` running beams.
        running = []
        for rank, (cumulative, b, token, logprob) in enumerate(candidates):
            ends = eos is not None and token == eos
            kept = rank < width if ends else len(running) < width
            parent = beams[b][0][-1] if beams[b][0] else -1
            nodes.append(BeamNode(step=step, parent=parent, token=token, logprob=logprob, cumulative=cumulative,
                                  kept=kept, finished=kept and ends))
            if kept and ends:
                finished.append(beams[b][0] + [len(nodes) - 1])
            elif kept:
                running.append((beams[b][0] + [len(nodes) - 1], cumulative))
        beams = running
        if len(finished) >= width:   # enough ended hypotheses (transformers' early_stopping=True)
            break
    hypotheses = [tuple(p) for p in finished] + [tuple(path) for path, _ in beams]   # ended, then unfinished
    result = BeamResult(prompt_ids=tuple(prompt_ids), width=width, length_penalty=length_penalty,
                        nodes=tuple(nodes), hypotheses=tuple(hypotheses), best=0)
    best = max(range(len(hypotheses)), key=result.score)
    return BeamResult(prompt_ids=result.prompt_ids, width=width, length_penalty=length_penalty,
                      nodes=result.nodes, hypotheses=result.hypotheses, best=best)


def sequence_logprob(lm: LiveModel, prompt_ids: list[int], new_ids: list[int]) -> float:
    """ln p(new_ids | prompt) under the model, in one pass: to compare any two continuations fairly."""
    if not new_ids:
        return 0.0
    with model_work():
        logits = lm.model(torch.tensor([list(prompt_ids) + list(new_ids)]), use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt_ids) - 1:-1], dim=-1)
    return float(logprobs.gather(1, torch.tensor(new_ids)[:, None]).sum())


def distinct_ngrams(ids: list[int], n: int) -> float:
    """Share of the n-grams in `ids` that are distinct: 1 means no n-gram repeats (Li et al.'s distinct-n)."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")

