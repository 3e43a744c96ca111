"""Where a transformer's sense of order comes from, measured on SmolLM2.

Three questions the positional-encoding and RoPE pages ask of the live model:
- the original Transformer's sinusoidal encoding, computed by its formula (no model reads it: SmolLM2 has none);
- what SmolLM2 has instead, read from its parameters and config (no position table at all, RoPE in attention);
- how much the model depends on order: shuffle the words of a text and compare the next-token prediction with
  RoPE on, with RoPE off, and with RoPE off and no causal mask (the one setting that is truly order-blind); and
  shift every position by k, which RoPE must not notice, because it only sees distances.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np
import torch

from engine.model.live_model import LiveModel
from engine.model.perplexity import scores_from_logits
from engine.model.traced import Interventions, TracedPass, trace

ORIGINAL_BASE = 10_000.0   # Vaswani et al. 2017, section 3.5
WORD_START = ("Ġ", "Ċ", "ĉ")   # byte-level BPE pieces that begin with a space, a newline or a tab
POSITION_NAME = re.compile(r"(^|[._])(wpe|pos|position|positions|position_embeddings?)([._]|$)")


def sinusoidal_encoding(positions: int, d_model: int, base: float = ORIGINAL_BASE) -> np.ndarray:
    """[positions, d_model] float64: PE(pos, 2i) = sin(pos / base^(2i/d)), PE(pos, 2i+1) = cos(the same angle).

    The table the original Transformer added to its token embeddings. d_model must be even; column 2i and 2i+1
    share one frequency, so the wavelengths run from 2*pi (i = 0) to nearly base * 2*pi (the last pair).
    """
    if positions < 1 or d_model < 2 or d_model % 2:
        raise ValueError(f"need at least one position and an even d_model, got {positions} and {d_model}")
    pos = np.arange(positions, dtype=np.float64)[:, None]
    angles = pos / base ** (np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    table = np.empty((positions, d_model))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)
    return table


def largest_shift_change(d_model: int, positions: int, shift: int, base: float = ORIGINAL_BASE) -> float:
    """max |PE(p + shift) - PE(p)| over the first `positions` positions: how much an absolute encoding moves the
    input vectors when every position is shifted (RoPE's attention scores, by contrast, do not move)."""
    table = sinusoidal_encoding(positions + shift, d_model, base)
    return float(np.abs(table[shift:] - table[:positions]).max())


@dataclass(frozen=True, eq=False)
class PositionFacts:
    """Where position enters SmolLM2, read from the live model (nothing typed in)."""
    position_parameters: int            # learned parameters that belong to positions: 0 in a RoPE model
    position_parameter_names: tuple[str, ...]
    token_table: tuple[int, int]        # the input embedding [vocab, d_model]: token ids only
    d_model: int
    layers: int
    parameters: int
    context_length: int
    rope_type: str
    rope_theta: float
    rotary_buffers: tuple[str, ...]     # non-learned tensors the rotary module holds (inv_freq)
    inv_freq: np.ndarray                # [head_dim / 2], read-only

    @property
    def learned_table_parameters(self) -> int:
        """What a GPT-2-style learned table for this context would cost: one d_model row per position."""
        return self.context_length * self.d_model


def position_facts(lm: LiveModel) -> PositionFacts:
    """Scan every parameter for anything position-shaped (by name, or by a dimension equal to the context)."""
    model, cfg = lm.model, lm.model.config
    context = int(cfg.max_position_embeddings)
    found = [(name, p.numel()) for name, p in model.named_parameters()
             if POSITION_NAME.search(name) or context in p.shape]
    rotary = model.model.rotary_emb
    inv_freq = rotary.inv_freq.detach().numpy().astype(np.float64)
    inv_freq.flags.writeable = False
    return PositionFacts(
        position_parameters=sum(n for _, n in found), position_parameter_names=tuple(n for n, _ in found),
        token_table=tuple(model.model.embed_tokens.weight.shape), d_model=int(cfg.hidden_size),
        layers=int(cfg.num_hidden_layers), parameters=lm.card.parameters, context_length=context,
        rope_type=str(rotary.rope_type), rope_theta=lm.card.rope_theta,
        rotary_buffers=tuple(f"rotary_emb.{n}" for n, _ in rotary.named_buffers()), inv_freq=inv_freq)


# --- shifting every position ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShiftCheck:
    """Two passes over the same tokens, positions 0..T-1 and k..k+T-1, compared."""
    shift: int
    max_score_difference: float     # over every recorded layer, head and visible (query, key) pair
    first_layer_difference: float   # layer 1 alone: its inputs are identical, so only RoPE's rounding differs
    max_logit_difference: float
    largest_score: float            # the largest |score| itself, for scale


def shift_check(base: TracedPass, shifted: TracedPass) -> ShiftCheck:
    """Compare the attention scores (after the 1/sqrt(d) scale, masked entries left out) and the logits."""
    if base.ids != shifted.ids or base.layers != shifted.layers:
        raise ValueError("the two passes must cover the same tokens and layers")
    a, b = base["scores"], shifted["scores"]
    visible = np.isfinite(a)
    diff = np.where(visible, np.abs(a - np.where(visible, b, 0.0)), 0.0)
    return ShiftCheck(shift=shifted.interventions.position_shift, max_score_difference=float(diff.max()),
                      first_layer_difference=float(diff[0].max()),
                      max_logit_difference=float(np.abs(base.logits - shifted.logits).max()),
                      largest_score=float(np.abs(a[visible]).max()))


def shifted_scores(lm: LiveModel, ids: list[int], shift: int) -> TracedPass:
    """Every layer's attention scores with positions starting at `shift` (0 = the model as it runs)."""
    return trace(lm, ids, record={"scores"}, interventions=Interventions(position_shift=shift))


# --- shuffling the words ----------------------------------------------------------------------------------------

def word_spans(pieces: list[str]) -> list[tuple[int, int]]:
    """Token index ranges [start, end) of words: a word starts at a piece that begins with whitespace.
    Punctuation stays with the word before it, so "mat." moves as one."""
    spans: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if not spans or piece.startswith(WORD_START):
            spans.append([i, i + 1])
        else:
            spans[-1][1] = i + 1
    return [(s, e) for s, e in spans]


def shuffle_words(ids: list[int], pieces: list[str], seed: int) -> tuple[int, ...] | None:
    """The same tokens with the words between the first and the last put in a random order (seeded).

    The first and last words stay: the last token is where the prediction is read, and the first word has no
    leading space. Only whole tokens move, so the shuffled text holds exactly the same token ids. None when
    there are fewer than two middle words that differ, so no shuffle can change anything.
    """
    spans = word_spans(pieces)
    middle = spans[1:-1]
    if len({tuple(ids[s:e]) for s, e in middle}) < 2:
        return None
    rng = random.Random(seed)
    order = list(range(len(middle)))
    for _ in range(100):     # a draw that leaves the words as they were shows nothing; draw again
        rng.shuffle(order)
        moved = [middle[j] for j in order]
        shuffled = [t for s, e in [spans[0], *moved, spans[-1]] for t in ids[s:e]]
        if shuffled != list(ids):
            return tuple(shuffled)
    return None


@dataclass(frozen=True)
class OrderEffect:
    """How the next-token prediction after the last token changes when the words before it are shuffled."""
    name: str
    interventions: Interventions
    original_top: tuple[tuple[int, float], ...]   # (token id, probability), most likely first
    shuffled_top: tuple[tuple[int, float], ...]
    total_variation: float      # half the L1 distance: the share of probability that moves, 0..1
    kl_nats: float              # KL(original || shuffled)
    original_perplexity: float  # of the original text under this setting, from the same pass


def _last_probs(logits: np.ndarray) -> torch.Tensor:
    return torch.softmax(torch.tensor(logits[-1], dtype=torch.float64), dim=-1)


def order_effect(lm: LiveModel, ids: list[int], shuffled: list[int], name: str, interventions: Interventions,
                 top: int = 5) -> OrderEffect:
    """Compare the prediction after `ids` with the one after `shuffled` (the same tokens in another order).

    The pass over `ids` also scores the original text, so its perplexity under this setting costs nothing more
    (the same pass and arithmetic as `engine.model.perplexity.perplexity`, hence the same number)."""
    original = trace(lm, ids, interventions=interventions).logits
    p, q = _last_probs(original), _last_probs(trace(lm, shuffled, interventions=interventions).logits)
    nll, _ = scores_from_logits(ids, original)
    tiny = torch.finfo(torch.float64).tiny
    kl = float((p * (torch.log(p.clamp_min(tiny)) - torch.log(q.clamp_min(tiny)))).sum())

    def best(dist: torch.Tensor) -> tuple[tuple[int, float], ...]:
        values, indices = dist.topk(top)
        return tuple((int(i), float(v)) for i, v in zip(indices, values))
    return OrderEffect(name=name, interventions=interventions, original_top=best(p), shuffled_top=best(q),
                       total_variation=float(0.5 * (p - q).abs().sum()), kl_nats=max(kl, 0.0),
                       original_perplexity=float(np.exp(float(nll.mean()))) if nll.size else float("nan"))
