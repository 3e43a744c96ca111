"""What a longer context costs SmolLM2 and what it buys, measured on the live model.

- `measure_context_costs`: at each context length, the time of the prefill (the whole prompt in one pass),
  the bytes of the KV cache it leaves (summed over the real tensors), and the time of each decode step that
  follows (one new token attending over the whole cache). Used by the context-window page (prefill grows
  faster than linearly, the cache linearly) and the state-space page (a transformer's per-token cost and
  memory grow with the context; a recurrent state's do not).
- `context_curve`: the perplexity of the last tokens of a text when the model is given only the c tokens
  before them, for growing c: what earlier context is worth, and what a window that drops old tokens loses.
- `position_shift_check`: the same text read at positions starting at 0 and far past the trained window.
- `needle_grid`: a fact hidden at several depths of filler text of several lengths, asked for at the end: the
  answer's probability, and where the answer step's attention goes.

Lengths are capped by the caller (a shared CPU); every timing is a real run, never a formula.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import median
from typing import Callable

import numpy as np
import torch

from engine.inside.flash_attention import sweep_lengths
from engine.runtime.gate import model_work
from engine.serving.kv_cache import cache_tensor_bytes, kv_cache_bytes, live_element_size, live_spec
from engine.model.live_model import LiveModel
from engine.model.perplexity import perplexity, scores_from_logits
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

# The token stream the cost sweep feeds: its content does not change the cost of a pass, only its length does.
FILLER = ("The river rose slowly through the spring, and the villagers moved their boats higher up the bank. "
          "Each evening the miller walked along the water and counted the stones that were still dry. ")


@dataclass(frozen=True)
class ContextPoint:
    length: int
    prefill_seconds: float         # one forward pass over `length` tokens, filling a fresh cache
    decode_ms: float               # median time of one decode step with `length` tokens already cached
    decode_ms_each: tuple[float, ...]
    kv_bytes: int                  # the cache's key and value tensors after the prefill, summed
    kv_formula_bytes: float        # 2 x layers x kv_heads x head_dim x bytes x length

    @property
    def prefill_ms_per_token(self) -> float:
        return 1000 * self.prefill_seconds / self.length


@dataclass(frozen=True)
class ContextCosts:
    points: tuple[ContextPoint, ...]
    requested: tuple[int, ...]
    context_length: int            # the model's max_position_embeddings, from its config
    measured_at: float

    @property
    def stopped_early(self) -> bool:
        return len(self.points) < len(self.requested)

    @property
    def noisy(self) -> bool:
        """True when other work visibly disturbed the run: decode steps at one length do the same work, so
        one taking more than twice another can only be interference."""
        return any(max(p.decode_ms_each) > 2 * min(p.decode_ms_each) for p in self.points if p.decode_ms_each)


def cost_lengths(longest: int, cap: int, shortest: int = 128) -> list[int]:
    """Doubling lengths from `shortest` up to min(longest, cap) (the same ladder as the FlashAttention sweep)."""
    return sweep_lengths(longest, cap, shortest)


def filler_ids(lm: LiveModel, length: int) -> list[int]:
    ids = token_ids(lm, FILLER)
    return (ids * (length // len(ids) + 1))[:length]


def measure_context_costs(lm: LiveModel, lengths: list[int], decode_steps: int = 4,
                          on_point: Callable[[int, int, ContextPoint], None] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> ContextCosts:
    """Prefill, cache bytes and decode steps at each length, in order; the CPU gate is taken once per length.

    A stop request (or a spent budget) ends the sweep before its next length; the first length always runs,
    so a result always has at least one point.
    """
    from transformers import DynamicCache

    spec, element = live_spec(lm), live_element_size(lm)
    stream = filler_ids(lm, max(lengths))
    with model_work():   # untimed warm-up: the first calls of a process pay one-off costs
        warm = DynamicCache(config=lm.model.config)
        lm.model(torch.tensor([stream[:32]]), past_key_values=warm, use_cache=True)
        lm.model(torch.tensor([[stream[32]]]), past_key_values=warm, use_cache=True)
        del warm
    points: list[ContextPoint] = []
    for i, length in enumerate(lengths):
        if i > 0 and should_stop is not None and should_stop():   # the first, shortest length always runs
            break
        with model_work():
            cache = DynamicCache(config=lm.model.config)
            started = time.perf_counter()
            out = lm.model(torch.tensor([stream[:length]]), past_key_values=cache, use_cache=True)
            prefill = time.perf_counter() - started
            kv = cache_tensor_bytes(cache)
            step_ms = []
            next_id = int(torch.argmax(out.logits[0, -1]))
            for _ in range(decode_steps):
                started = time.perf_counter()
                out = lm.model(torch.tensor([[next_id]]), past_key_values=cache, use_cache=True)
                step_ms.append(1000 * (time.perf_counter() - started))
                next_id = int(torch.argmax(out.logits[0, -1]))
            del cache, out
        point = ContextPoint(length=length, prefill_seconds=prefill, decode_ms=median(step_ms),
                             decode_ms_each=tuple(step_ms), kv_bytes=kv,
                             kv_formula_bytes=kv_cache_bytes(spec, element, length))
        points.append(point)
        if on_point:
            on_point(i + 1, len(lengths), point)
    return ContextCosts(points=tuple(points), requested=tuple(lengths),
                        context_length=lm.model.config.max_position_embeddings, measured_at=time.time())


# --- what earlier context is worth ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ContextCurve:
    scored: int                    # the last `scored` tokens are predicted at every context size
    contexts: tuple[int, ...]      # earlier tokens given before the scored ones
    perplexities: tuple[float, ...]
    mean_nll: tuple[float, ...]    # nats per scored token
    token_nll: tuple[tuple[float, ...], ...]   # per context: each scored token's NLL
    total_tokens: int

    @property
    def full(self) -> float:
        return self.perplexities[-1]

    @property
    def least(self) -> float:
        return self.perplexities[0]


def context_sizes(available: int) -> list[int]:
    """1, 4, 16, 64, ... then `available` itself (all the earlier text); a power of 4 within 1.5x of `available`
    is left out, since its point would sit on top of the last one."""
    sizes, c = [], 1
    while c * 1.5 <= available:
        sizes.append(c)
        c *= 4
    return sizes + [available]


def context_curve(lm: LiveModel, ids: list[int], scored: int,
                  on_point: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> ContextCurve:
    """Perplexity of the last `scored` tokens of `ids` when the model sees only c earlier tokens before them.

    For context c the model reads ids[n - scored - c:], one pass, and the last `scored` predictions are kept:
    each scored token is predicted from the c tokens before the scored part plus the scored tokens before it.
    This is what a window that drops the oldest tokens does to a long conversation. Passes go through the
    shared perplexity cache (engine.model.perplexity), so a second reader with the same text runs nothing.
    """
    n = len(ids)
    if n < scored + 1 or scored < 1:
        raise ValueError(f"need more than {scored} tokens to score {scored} with at least one before them")
    sizes = context_sizes(n - scored)
    ppl, nll, each = [], [], []
    for i, c in enumerate(sizes):
        if should_stop is not None and should_stop() and i > 0:
            break
        window = ids[n - scored - c:]
        scores = perplexity(lm, window).token_nll[-scored:]
        each.append(tuple(float(x) for x in scores))
        nll.append(float(np.mean(scores)))
        ppl.append(float(np.exp(np.mean(scores))))
        if on_point:
            on_point(i + 1, len(sizes))
    return ContextCurve(scored=scored, contexts=tuple(sizes[:len(ppl)]), perplexities=tuple(ppl),
                        mean_nll=tuple(nll), token_nll=tuple(each), total_tokens=n)


@dataclass(frozen=True)
class ShiftCheck:
    shifts: tuple[int, ...]
    perplexities: tuple[float, ...]


def position_shift_check(lm: LiveModel, ids: list[int], shifts: tuple[int, ...]) -> ShiftCheck:
    """Perplexity of the same tokens read at positions starting at each shift (RoPE rotations only)."""
    return ShiftCheck(shifts=tuple(shifts), perplexities=tuple(
        perplexity(lm, ids, Interventions(position_shift=int(s))).perplexity for s in shifts))


# --- a needle in a haystack ----------------------------------------------------------------------------------

HAYSTACK = (
    "The morning train to the coast was late again.", "A farmer checked the fences along the northern field.",
    "Rain had softened the path through the orchard.", "In the library, the clock above the door ticked quietly.",
    "Two boats were tied up at the end of the pier.", "The baker opened early and sold out of bread by nine.",
    "Children played football on the square until dusk.", "The river was wide and slow below the old bridge.",
    "A letter arrived for the teacher in a brown envelope.", "The market stalls sold apples, cheese and wool.",
    "Wind turned the weathervane on the church roof.", "An old dog slept in the sun by the garden wall.")
NEEDLE = " The secret code for the blue door is {code}."
QUESTION = "\nQuestion: What is the secret code for the blue door?\nAnswer: The secret code for the blue door is"
ANSWER = " {code}."


@dataclass(frozen=True, eq=False)
class NeedleCell:
    ids: tuple[int, ...]          # haystack, needle, question and answer
    haystack_tokens: int          # the filler's length, asked for
    depth: float                  # where the needle sits in the filler: 0 = first, 1 = last
    tokens: int                   # the whole prompt with its answer
    needle: tuple[int, int]       # token span [start, stop) of the needle sentence
    answer_start: int             # first answer token; the position before it is the answer step
    answer_probability: float     # product of the answer tokens' probabilities (teacher forcing)
    found: bool                   # every answer token is the model's top choice
    attention: np.ndarray         # [answer_start] mean attention of the answer step, over all layers and heads
    needle_share_by_layer: np.ndarray   # [layers] share of the answer step's attention on the needle

    @property
    def needle_share(self) -> float:
        return float(self.attention[self.needle[0]:self.needle[1]].sum())


@dataclass(frozen=True, eq=False)
class NeedleGrid:
    code: str
    lengths: tuple[int, ...]
    depths: tuple[float, ...]
    cells: tuple[NeedleCell, ...]     # lengths outer, depths inner, in order; may stop early

    def cell(self, length: int, depth: float) -> NeedleCell | None:
        return next((c for c in self.cells if c.haystack_tokens == length and c.depth == depth), None)


def needle_case(lm: LiveModel, length: int, depth: float, code: str) -> tuple[list[int], tuple[int, int], int]:
    """(ids of haystack + needle + question + answer, the needle's token span, where the answer starts)."""
    sentences, i = [], 0
    while len(token_ids(lm, " ".join(sentences))) < length:
        sentences.append(HAYSTACK[i % len(HAYSTACK)])
        i += 1
    k = round(depth * len(sentences))
    before = " ".join(sentences[:k])
    needle = NEEDLE.format(code=code) if before else NEEDLE.format(code=code).lstrip()
    after = (" " + " ".join(sentences[k:])) if k < len(sentences) else ""
    start = len(token_ids(lm, before)) if before else 0
    stop = len(token_ids(lm, before + needle))
    prompt = token_ids(lm, before + needle + after + QUESTION)
    ids = token_ids(lm, before + needle + after + QUESTION + ANSWER.format(code=code))
    return ids, (start, stop), len(prompt)


def needle_cell(lm: LiveModel, length: int, depth: float, code: str) -> NeedleCell:
    """One traced pass: the answer's probability and where the answer step's attention goes, layer by layer."""
    ids, span, answer_start = needle_case(lm, length, depth, code)
    tp = trace(lm, ids, record={"q_rot", "k_rot"})
    nll, top1 = scores_from_logits(ids, tp.logits)
    answer = slice(answer_start - 1, None)          # NLL index t scores token t + 1
    step = answer_start - 1
    q, k = tp["q_rot"][:, :, step], tp["k_rot"][:, :, :step + 1]      # [layers, heads, d], [layers, kv, T, d]
    share = q.shape[1] // k.shape[1]
    k = np.repeat(k, share, axis=1)
    scores = np.einsum("lhd,lhtd->lht", q, k) / np.sqrt(q.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)                         # [layers, heads, T]
    return NeedleCell(ids=tuple(ids), haystack_tokens=length, depth=depth, tokens=len(ids), needle=span,
                      answer_start=answer_start,
                      answer_probability=float(np.exp(-nll[answer].sum())), found=bool(top1[answer].all()),
                      attention=weights.mean((0, 1)).astype(np.float32),
                      needle_share_by_layer=weights[:, :, span[0]:span[1]].sum(-1).mean(1).astype(np.float32))


def needle_grid(lm: LiveModel, lengths: list[int], depths: list[float], code: str,
                on_point: Callable[[int, int, NeedleCell], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> NeedleGrid:
    cells: list[NeedleCell] = []
    total = len(lengths) * len(depths)
    for length in lengths:
        for depth in depths:
            if cells and should_stop is not None and should_stop():
                return NeedleGrid(code, tuple(lengths), tuple(depths), tuple(cells))
            cells.append(needle_cell(lm, length, depth, code))
            if on_point:
                on_point(len(cells), total, cells[-1])
    return NeedleGrid(code, tuple(lengths), tuple(depths), tuple(cells))
