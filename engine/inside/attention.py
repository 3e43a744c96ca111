"""Attention in SmolLM2: capture every head's weights for a text, redo one head's row by hand, read head statistics.

Indices here are 0-based (layer 0..29, head 0..8, positions 0..T-1); pages may show them 1-based.
`hidden_states[L]` of a forward pass is the residual stream entering layer L (for L < 30); the last entry,
`hidden_states[30]`, comes after the final norm and enters no layer.

Nothing here changes the shared model. The worked row takes its query, keys and values from the traced
forward (engine/model/traced.py); the check that rebuilds the next residual state from the hand-made head outputs
calls the model's own modules (o_proj, norms, MLP) as plain functions under `torch.inference_mode()`, so it
holds the traced vectors to the model rather than to themselves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from engine.model.forward import forward
from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import Interventions, trace


@dataclass(frozen=True, eq=False)
class AttentionCapture:
    """Every attention weight and residual-stream vector of one forward pass. Arrays are read-only."""
    ids: list[int]
    tokens: list[str]            # each token decoded on its own
    attentions: np.ndarray       # [layers, heads, T, T] float32; rows sum to 1, zero above the diagonal
    hidden_states: np.ndarray    # [layers + 1, T, d_model] float32

    @property
    def layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def heads(self) -> int:
        return self.attentions.shape[1]

    @property
    def length(self) -> int:
        return len(self.ids)


def capture(lm: LiveModel, text: str) -> AttentionCapture:
    ids = token_ids(lm, text)
    if not ids:
        raise ValueError("the text is empty")
    fp = forward(lm, ids, attentions=True, hidden_states=True)
    attentions, hidden = fp.attentions, fp.hidden_states
    attentions.flags.writeable = False  # shared through a cache by every session: read-only
    hidden.flags.writeable = False
    return AttentionCapture(ids=list(ids), tokens=decode_each(lm, ids), attentions=attentions, hidden_states=hidden)


@dataclass(frozen=True, eq=False)
class AttentionStep:
    """One query row of one head, computed by hand from the model's own vectors, every stage kept."""
    layer: int
    head: int
    kv_head: int                 # the key/value head this query head shares (grouped-query attention)
    query: int                   # position i
    head_dim: int
    q: np.ndarray                # [head_dim] query of position i, after RoPE
    keys: np.ndarray             # [T, head_dim] keys of every position, after RoPE
    values: np.ndarray           # [T, head_dim]
    raw_scores: np.ndarray       # [T] q . k_j for every j (also the later ones, which the mask then removes)
    scaled_scores: np.ndarray    # [T] raw / sqrt(head_dim)
    masked_scores: np.ndarray    # [T] scaled, with -inf where j > i
    weights: np.ndarray          # [T] softmax of the masked scores; zero where j > i
    output: np.ndarray           # [head_dim] sum_j weights_j v_j: this head's output before W_O
    model_weights: np.ndarray    # [T] the model's own attention row (eager attention)
    layer_output_check: float    # max |difference| between the next residual state rebuilt by hand and the model's

    @property
    def scale(self) -> float:
        return math.sqrt(self.head_dim)

    @property
    def max_abs_difference(self) -> float:
        return float(np.max(np.abs(self.weights - self.model_weights)))


@lru_cache(maxsize=8)
def _layer_vectors(lm: LiveModel, ids: tuple[int, ...], layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q and K after RoPE, and V, of every head at `layer`, from the traced forward.

    The pass stops after `layer` (exit_layer), so a layer near the input costs a fraction of a full pass.
    A handful are kept because moving the head or query slider within a layer needs the same vectors.
    """
    traced = trace(lm, list(ids), record={"q_rot", "k_rot", "v"}, layers=[layer],
                   interventions=Interventions(exit_layer=layer + 1))
    # Only the three small arrays are kept, not the pass's [T, vocab] logits (12.6 MB at 64 tokens).
    return tuple(traced.at(name, layer) for name in ("q_rot", "k_rot", "v"))


def _softmax_row(masked: np.ndarray) -> np.ndarray:
    finite = np.isfinite(masked)
    z = np.zeros_like(masked)
    z[finite] = np.exp(masked[finite] - masked[finite].max())
    return z / z.sum()


def _row_by_hand(q: np.ndarray, keys: np.ndarray, query: int, head_dim: int):
    raw = keys @ q
    scaled = raw / math.sqrt(head_dim)
    masked = scaled.copy()
    masked[query + 1:] = -np.inf
    return raw, scaled, masked, _softmax_row(masked)


def attention_step(lm: LiveModel, cap: AttentionCapture, layer: int, head: int, query: int) -> AttentionStep:
    """Redo head `head` of layer `layer` for query position `query` from the captured residual stream."""
    layers, heads, length = cap.layers, cap.heads, cap.length
    if not (0 <= layer < layers and 0 <= head < heads and 0 <= query < length):
        raise IndexError(f"layer {layer}, head {head}, query {query} out of range ({layers}, {heads}, {length})")
    q_np, k_np, v_np = (a.astype(np.float64) for a in _layer_vectors(lm, tuple(cap.ids), layer))
    group = q_np.shape[0] // k_np.shape[0]
    head_dim = q_np.shape[-1]
    outputs = []
    for h in range(heads):  # all heads of this query, to rebuild the layer's output as a check
        _, _, _, w = _row_by_hand(q_np[h, query], k_np[h // group], query, head_dim)
        outputs.append(w @ v_np[h // group])
    kv = head // group
    raw, scaled, masked, weights = _row_by_hand(q_np[head, query], k_np[kv], query, head_dim)
    with model_work():   # the CPU gate, like every model computation
        check = _layer_output_difference(lm, cap, layer, query, np.concatenate(outputs))
    return AttentionStep(
        layer=layer, head=head, kv_head=kv, query=query, head_dim=head_dim,
        q=q_np[head, query], keys=k_np[kv], values=v_np[kv],
        raw_scores=raw, scaled_scores=scaled, masked_scores=masked, weights=weights, output=outputs[head],
        model_weights=cap.attentions[layer, head, query].astype(np.float64),
        layer_output_check=check,
    )


def _layer_output_difference(lm: LiveModel, cap: AttentionCapture, layer: int, query: int,
                             heads_concat: np.ndarray) -> float:
    """Push the hand-made head outputs through W_O, the residual, the MLP (and the final norm after the last
    layer) and compare with the model's own next hidden state at this position."""
    model = lm.model.model
    block = model.layers[layer]
    x = torch.from_numpy(np.array(cap.hidden_states[layer, query], dtype=np.float32))
    attn_out = block.self_attn.o_proj(torch.from_numpy(heads_concat.astype(np.float32)))
    h = x + attn_out
    h = h + block.mlp(block.post_attention_layernorm(h))
    if layer == cap.layers - 1:
        h = model.norm(h)
    return float((h - torch.from_numpy(np.array(cap.hidden_states[layer + 1, query]))).abs().max())


@dataclass(frozen=True, eq=False)
class HeadStats:
    """Per-head statistics of one text, each [layers, heads], averaged over query positions 1..T-1.

    Position 0 is left out: it can only see itself, so its row is always [1] and says nothing about the head.
    """
    entropy_bits: np.ndarray       # mean entropy of a query's weights, in bits
    mean_distance: np.ndarray      # mean of sum_j a_ij (i - j), in tokens
    first_token_share: np.ndarray  # mean weight on position 0 (the attention sink)
    previous_token_share: np.ndarray  # mean weight on position i - 1
    self_share: np.ndarray         # mean weight on position i itself
    queries: int                   # how many query positions were averaged

    def as_rows(self) -> list[dict]:
        layers, heads = self.entropy_bits.shape
        return [dict(layer=l, head=h, entropy_bits=float(self.entropy_bits[l, h]),
                     mean_distance=float(self.mean_distance[l, h]),
                     first_token_share=float(self.first_token_share[l, h]),
                     previous_token_share=float(self.previous_token_share[l, h]),
                     self_share=float(self.self_share[l, h]))
                for l in range(layers) for h in range(heads)]


def head_stats(attentions: np.ndarray) -> HeadStats:
    """Entropy, attended distance, sink share and previous-token share of every head. Needs T >= 2."""
    length = attentions.shape[-1]
    if length < 2:
        raise ValueError("head statistics need at least two tokens")
    a = attentions[..., 1:, :].astype(np.float64)               # queries 1..T-1
    rows = np.arange(1, length)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(a > 0, a * np.log2(a), 0.0)
    entropy = -plogp.sum(-1).mean(-1)
    distance = (rows[:, None] - np.arange(length)[None, :]).clip(min=0)   # i - j, zero where masked
    mean_distance = (a * distance).sum(-1).mean(-1)
    first = a[..., 0].mean(-1)
    previous = a[..., np.arange(length - 1), rows - 1].mean(-1)
    itself = a[..., np.arange(length - 1), rows].mean(-1)
    return HeadStats(entropy_bits=entropy, mean_distance=mean_distance, first_token_share=first,
                     previous_token_share=previous, self_share=itself, queries=length - 1)


def pooled(attention: np.ndarray, size: int) -> np.ndarray:
    """Shrink [..., T, T] maps to at most [..., size, size] for thumbnails.

    Keys are summed within each block and queries averaged, so every pooled row still sums to 1 and a
    sink's weight on the first token stays in the first column.
    """
    length = attention.shape[-1]
    if length <= size:
        return attention
    edges = np.linspace(0, length, size + 1).round().astype(int)
    summed = np.add.reduceat(attention, edges[:-1], axis=-1)
    counts = np.diff(edges)
    return np.add.reduceat(summed, edges[:-1], axis=-2) / counts[:, None]


@dataclass(frozen=True)
class Findings:
    """What the statistics say about one text, ready to be put into words. Indices are 0-based."""
    previous_token_heads: list[tuple[int, int, float]]  # (layer, head, share) above the threshold, largest first
    sink_layers: list[int]                  # layers whose heads put, on average, over half their weight on token 0
    layer_first_share: np.ndarray           # [layers] mean first-token share over the layer's heads
    strongest_sink: tuple[int, int, float]
    most_focused: tuple[int, int, float]    # lowest mean entropy (bits)
    most_spread: tuple[int, int, float]     # highest mean entropy (bits)
    uniform_share: float                    # weight on any one visible token if attention were spread evenly
    threshold: float


def findings(stats: HeadStats, threshold: float = 0.5) -> Findings:
    def top(values: np.ndarray, pick=np.argmax) -> tuple[int, int, float]:
        l, h = np.unravel_index(pick(values), values.shape)
        return int(l), int(h), float(values[l, h])

    prev = stats.previous_token_share
    heads = sorted(((int(l), int(h), float(prev[l, h])) for l, h in np.argwhere(prev > threshold)),
                   key=lambda t: -t[2])
    per_layer = stats.first_token_share.mean(1)
    # Query i sees i + 1 tokens; even spreading would give each 1 / (i + 1), averaged over the queries used.
    uniform = float(np.mean(1.0 / np.arange(2, stats.queries + 2)))
    return Findings(previous_token_heads=heads, sink_layers=[int(l) for l in np.flatnonzero(per_layer > 0.5)],
                    layer_first_share=per_layer, strongest_sink=top(stats.first_token_share),
                    most_focused=top(stats.entropy_bits, np.argmin), most_spread=top(stats.entropy_bits),
                    uniform_share=uniform, threshold=threshold)
