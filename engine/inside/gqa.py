"""Grouped-query attention on the live model: who shares keys and values, what sharing saves, what pooling costs.

SmolLM2 has 9 query heads but only 3 key/value heads: query head h reads KV head h // 3 (the layout the
traced forward and the model's own kernel use). Three things are measured here:
- how differently the query heads that share one KV head still attend (their attention rows compared);
- the KV-cache bytes per token of multi-head (one KV head per query head), grouped (as configured) and
  multi-query (one KV head for all) attention: the grouped figure is read from real cache tensors by
  engine.serving.kv_cache, the multi-query one from the pooled pass's own K/V tensors, the multi-head one is the
  formula (the model has no such heads to measure);
- what mean-pooling the KV heads into one (the GQA paper's conversion, without its uptraining) costs in
  perplexity, in every layer or in a chosen range of layers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from engine.serving.kv_cache import ModelSpec, kv_bytes_per_token
from engine.model.live_model import LiveModel
from engine.model.traced import Interventions, trace

_KV_WEIGHT = re.compile(r"layers\.(\d+)\.self_attn\.[kv]_proj")


def query_groups(heads: int, kv_heads: int) -> tuple[tuple[int, ...], ...]:
    """0-based query heads per KV head: group g holds heads g*s .. g*s + s - 1 with s = heads / kv_heads."""
    if kv_heads < 1 or heads % kv_heads:
        raise ValueError(f"{heads} query heads do not split evenly over {kv_heads} KV heads")
    share = heads // kv_heads
    return tuple(tuple(range(g * share, (g + 1) * share)) for g in range(kv_heads))


# ----------------------------------------------------------------------------------------------------------
# Heads that share K and V: do they attend alike?
# ----------------------------------------------------------------------------------------------------------

def head_differences(probs: np.ndarray) -> np.ndarray:
    """[heads, heads] mean total-variation distance between two heads' attention rows.

    For one query the distance is half the summed |difference| of the two weight rows: 0 when the heads put
    their weight on the same tokens in the same amounts, 1 when they share none. Averaged over query positions
    2..T (position 1 can only attend to itself, so every head agrees there).
    """
    rows = probs[:, 1:].astype(np.float64)                      # [heads, T-1, T]
    if rows.shape[1] == 0:
        return np.zeros((probs.shape[0], probs.shape[0]))
    diff = np.abs(rows[:, None] - rows[None, :]).sum(-1) / 2    # [heads, heads, T-1]
    return diff.mean(-1)


@dataclass(frozen=True)
class SiblingSummary:
    within: float     # mean distance between heads that share a KV head
    across: float     # mean distance between heads that read different KV heads


def sibling_summary(distances: np.ndarray, groups: tuple[tuple[int, ...], ...]) -> SiblingSummary:
    group_of = {h: g for g, members in enumerate(groups) for h in members}
    heads = len(group_of)
    same = [distances[i, j] for i in range(heads) for j in range(heads) if i != j and group_of[i] == group_of[j]]
    other = [distances[i, j] for i in range(heads) for j in range(heads) if group_of[i] != group_of[j]]
    return SiblingSummary(within=float(np.mean(same)) if same else float("nan"),
                          across=float(np.mean(other)) if other else float("nan"))


# ----------------------------------------------------------------------------------------------------------
# The cache: multi-head, grouped and multi-query
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AttentionVariant:
    kind: str                 # "MHA", "GQA", "MQA"
    kv_heads: int
    bytes_per_token: float
    configured: bool          # the model's own layout


def attention_variants(spec: ModelSpec, bytes_per_value: float) -> list[AttentionVariant]:
    """The same model with one KV head per query head, as configured, and with a single KV head."""
    out = []
    for kind, kv_heads in (("MHA", spec.heads), ("GQA", spec.kv_heads), ("MQA", 1)):
        if kind == "GQA" and spec.kv_heads in (1, spec.heads):
            continue   # the configured layout is already one of the other two
        out.append(AttentionVariant(kind, kv_heads, kv_bytes_per_token(spec.with_kv_heads(kv_heads), bytes_per_value),
                                    configured=kv_heads == spec.kv_heads))
    return out


def traced_kv_bytes(lm: LiveModel, ids: list[int], interventions: Interventions = Interventions()) -> tuple[int, tuple]:
    """Bytes of the K and V tensors a traced pass produced in every layer, and one layer's K shape.

    Under Interventions(kv_groups=1) these are the tensors a multi-query cache would hold: one KV head.
    """
    tp = trace(lm, ids, record={"k", "v"}, interventions=interventions)
    return int(tp["k"].nbytes + tp["v"].nbytes), tuple(tp["k"].shape[1:])


# ----------------------------------------------------------------------------------------------------------
# Pooling the KV heads into one, in some layers
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PooledKV:
    """A weight transform that mean-pools the K and V projections of `layers` across their KV heads.

    Every KV head of those layers gets the mean projection, so all query heads read the same keys and
    values: multi-query attention in those layers (a real MQA model would store the one head once). A
    projection is linear, so pooling the weights equals pooling the projected heads, which is what
    Interventions(kv_groups=1) does in every layer. Hashed by its settings, so equal ranges share cache entries.
    """
    layers: frozenset[int]
    kv_heads: int
    head_dim: int

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        match = _KV_WEIGHT.fullmatch(name)
        if match is None or int(match.group(1)) not in self.layers:
            return weight
        by_head = weight.view(self.kv_heads, self.head_dim, weight.shape[1])
        return by_head.mean(0, keepdim=True).expand_as(by_head).reshape(weight.shape).clone()


def pooled_interventions(lm: LiveModel, first: int, last: int) -> Interventions:
    """One KV head in layers first..last (0-based, inclusive): kv_groups=1 when that is every layer."""
    card = lm.card
    first, last = max(0, int(first)), min(card.layers - 1, int(last))
    if first > last:
        raise ValueError(f"no layers in {first}..{last}")
    if first == 0 and last == card.layers - 1:
        return Interventions(kv_groups=1)
    return Interventions(weight_transform=PooledKV(frozenset(range(first, last + 1)), card.kv_heads, card.head_dim))
