"""Retrieval-augmented generation with the live SmolLM2: the same question asked with and without retrieved
chunks, answered greedily, and scored by the probability the model gives a reference answer.

The answer's probability is teacher-forced: the reference's tokens are appended right after the assistant's
turn opens, and one forward pass gives p(token_i | prompt, tokens before i) for each. Their product is the
probability that the model's reply starts with exactly the reference. It is a stricter, smoother measure than
"did the greedy answer contain it", and it moves even when the greedy answer does not change.

Lost in the middle: with the chunk that holds the reference (the gold chunk) moved through the k positions of
the context, the others kept in their retrieved order, the reference's probability at each position shows
whether this model reads the whole context evenly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.decoding.generation import generate
from engine.model.live_model import LiveModel
from engine.retrieval.chunks import Chunk
from engine.tokens.tokenizers import chat_prompt
from engine.tokens.offsets import token_ids

Progress = Callable[[float, str], None]


def context_text(chunks: Sequence[Chunk]) -> str:
    """The retrieved chunks as the prompt shows them: numbered, each with the page and section it came from."""
    return "\n".join(f"[{i}] {c.title} ({c.section}): {c.text}" for i, c in enumerate(chunks, 1))


def user_message(question: str, chunks: Sequence[Chunk]) -> str:
    """The user's turn. With chunks, they come first and the model is asked to use them; without, the same
    question stands alone, so the only difference between the two prompts is the context."""
    if not chunks:
        return f"Question: {question}\nAnswer in one short sentence."
    return (f"Excerpts from a handbook about language models:\n{context_text(chunks)}\n\n"
            f"Question: {question}\nAnswer in one short sentence, using the excerpts.")


def rag_prompt(lm: LiveModel, question: str, chunks: Sequence[Chunk]) -> str:
    """The full text the model reads, in its own chat template, ending where the assistant's reply begins."""
    return chat_prompt(lm, user_message(question, chunks))


def contains_reference(chunk: Chunk, reference: str) -> bool:
    """Does the chunk's text hold the reference answer (case and spacing ignored)?"""
    ref = " ".join(reference.lower().split())
    return bool(ref) and ref in " ".join(chunk.text.lower().split())


def gold_index(chunks: Sequence[Chunk], order: Sequence[int], reference: str) -> int | None:
    """The best-ranked chunk (by `order`, best first) that holds the reference, or None."""
    return next((i for i in order if contains_reference(chunks[i], reference)), None)


def reference_logprobs(lm: LiveModel, prompt: str, reference: str) -> tuple[tuple[int, ...], np.ndarray]:
    """The reference's token ids and ln p of each after the prompt, teacher-forced, in one forward pass."""
    prompt_ids = token_ids(lm, prompt)
    ref_ids = token_ids(lm, reference)
    if not prompt_ids or not ref_ids:
        return tuple(ref_ids), np.zeros(0)
    with model_work():
        logits = lm.model(torch.tensor([prompt_ids + ref_ids]), use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits[len(prompt_ids) - 1:-1], dim=-1)
    picked = logprobs.gather(1, torch.tensor(ref_ids)[:, None])[:, 0]
    return tuple(ref_ids), picked.double().numpy()


@dataclass(frozen=True)
class Condition:
    """One way of asking: the prompt's length, the greedy answer, and the reference's per-token ln p."""
    prompt_tokens: int
    answer: str | None                 # None until generated (or when stopped first)
    answer_tokens: int
    stopped_at_eos: bool
    reference_logprobs: tuple[float, ...]

    @property
    def reference_logprob(self) -> float:
        return float(sum(self.reference_logprobs))

    @property
    def reference_probability(self) -> float:
        return float(np.exp(self.reference_logprob))


@dataclass(frozen=True)
class RagRun:
    question: str
    reference: str
    reference_ids: tuple[int, ...]
    without: Condition | None
    with_context: Condition | None
    gold: int | None                           # chunk id of the gold chunk, if any chunk holds the reference
    position_logprobs: tuple[float, ...]       # ln p(reference) with the gold chunk at position 1..k
    position_tokens: tuple[int, ...]           # each of those prompts' length
    complete: bool


def _score(lm: LiveModel, prompt: str, reference: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    if not reference:
        return (), ()
    ids, logprobs = reference_logprobs(lm, prompt, reference)
    return ids, tuple(float(x) for x in logprobs)


def positions_order(retrieved: Sequence[int], gold: int, k: int) -> list[list[int]]:
    """For each position p = 1..k, the context with the gold chunk at p and the best other chunks around it
    in their retrieved order."""
    others = [i for i in retrieved if i != gold][:k - 1]
    return [others[:p] + [gold] + others[p:] for p in range(len(others) + 1)]


def run_rag(lm: LiveModel, question: str, reference: str, chunks: Sequence[Chunk], retrieved: Sequence[int],
            ranking: Sequence[int], max_new_tokens: int, progress: Progress = lambda f, m: None,
            should_stop: Callable[[], bool] = lambda: False) -> RagRun:
    """Score and answer without and with the `retrieved` chunks (ids into `chunks`, best first), then move the
    gold chunk (the best-ranked in `ranking` that holds the reference) through the context."""
    k = len(retrieved)
    context = [chunks[i] for i in retrieved]
    plain, augmented = rag_prompt(lm, question, []), rag_prompt(lm, question, context)
    gold = gold_index(chunks, ranking, reference) if reference else None
    orders = positions_order(retrieved, gold, k) if gold is not None and k >= 2 else []
    steps = 4 + len(orders)
    conditions: dict[str, Condition] = {}
    ref_ids: tuple[int, ...] = ()
    stopped = False
    for step, (name, prompt) in enumerate((("without", plain), ("with", augmented))):
        progress(step / steps, f"Scoring the reference answer {name} the context...")
        ref_ids, logprobs = _score(lm, prompt, reference)
        conditions[name] = Condition(prompt_tokens=len(token_ids(lm, prompt)), answer=None, answer_tokens=0,
                                     stopped_at_eos=False, reference_logprobs=logprobs)
    for step, (name, prompt) in enumerate((("without", plain), ("with", augmented)), start=2):
        if should_stop():
            stopped = True
            break
        progress(step / steps, f"Answering {name} the context (greedy, up to {max_new_tokens} tokens)...")
        gen = generate(lm, prompt, max_new_tokens)
        old = conditions[name]
        conditions[name] = Condition(prompt_tokens=old.prompt_tokens, answer=gen.new_text.strip(),
                                     answer_tokens=len(gen.new_ids), stopped_at_eos=gen.stopped_at_eos,
                                     reference_logprobs=old.reference_logprobs)
    position_logprobs, position_tokens = [], []
    for step, order in enumerate(orders, start=4):
        if stopped or should_stop():
            stopped = True
            break
        progress(step / steps, f"Gold chunk at position {step - 3} of {len(orders)}: scoring the reference...")
        prompt = rag_prompt(lm, question, [chunks[i] for i in order])
        position_logprobs.append(sum(_score(lm, prompt, reference)[1]))
        position_tokens.append(len(token_ids(lm, prompt)))
    progress(1.0, "Done")
    return RagRun(question=question, reference=reference, reference_ids=ref_ids, without=conditions["without"],
                  with_context=conditions["with"], gold=gold, position_logprobs=tuple(position_logprobs),
                  position_tokens=tuple(position_tokens), complete=not stopped)
