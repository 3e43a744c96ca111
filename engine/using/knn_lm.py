"""A kNN-LM (Khandelwal et al. 2020): SmolLM2 with an external memory it reads by nearest-neighbour search.

The memory is built from a document in ONE traced forward pass. At every position i of the document the
pass gives a context vector (the key) and the document says which token came next (the value):

    memory = {(f(doc[:i+1]), doc[i+1])}        f = a hidden state of the last position of the prefix

A query text is run through the model in its own pass (the document is NOT in its context: the memory is
outside the window). At each query position the k nearest keys by squared Euclidean distance d are
retrieved and turned into a distribution over their values,

    p_kNN(y) = sum over neighbours j with value y of softmax(-d_j / temperature)

then mixed with the model's own next-token distribution:  p = lambda * p_kNN + (1 - lambda) * p_LM.

Key vectors. The default, "final_norm", is the output of the final RMSNorm: the vector the LM head multiplies
by the (tied) embedding matrix to get the logits. Khandelwal et al. used the input to the LAST layer's
feed-forward block; in SmolLM2's pre-norm block that is what the FFN reads after its RMSNorm, which the traced
pass records too ("ffn_input": layer 30's ffn_norm_out), so both are offered, from the same single pass.

Everything a slider touches (k, temperature, lambda) is computed from the cached neighbour lists and the
model's cached log-probabilities: moving a slider runs no forward pass. The mixture is computed in log space
with log(0) = -inf, so lambda = 0 returns the model's own log-probabilities bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
import torch

from engine.model.live_model import LiveModel
from engine.model.perplexity import scores_from_logits
from engine.model.traced import trace

KEY_KINDS = ("final_norm", "ffn_input")
KEY_NAMES = MappingProxyType({
    "final_norm": "LM head input",
    "ffn_input": "Last FFN input (paper)",
})
TOP_N = 5    # the model's own top next tokens kept per position, for the per-token view
K_MAX = 64   # neighbours kept per query position; the k slider reads a prefix of these lists


def _read_only(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class HiddenPass:
    """One traced pass over a text: the key vectors at every position and the model's own next-token scores."""
    ids: tuple[int, ...]
    keys: Mapping[str, np.ndarray]     # kind -> [T, d_model] float32
    target_logprob: np.ndarray         # [T - 1] float64 natural log p_LM(ids[t+1] | ids[:t+1])
    top_ids: np.ndarray                # [T - 1, TOP_N] the model's most likely next tokens at each position
    top_probs: np.ndarray              # [T - 1, TOP_N] their probabilities


def hidden_pass(lm: LiveModel, ids: list[int] | tuple[int, ...]) -> HiddenPass:
    """The one forward pass: records the final norm and the last layer's FFN input; scores the next tokens
    exactly as `engine.model.perplexity` does, so lambda = 0 reproduces the model's own perplexity."""
    ids = tuple(int(i) for i in ids)
    last = lm.model.config.num_hidden_layers - 1
    tp = trace(lm, list(ids), record={"final_norm", "ffn_norm_out"}, layers=[last])
    nll, _ = scores_from_logits(ids, tp.logits)
    probs = torch.softmax(torch.tensor(np.asarray(tp.logits[:-1], np.float32)), -1)
    top_probs, top_ids = torch.topk(probs, TOP_N, dim=-1) if len(ids) > 1 else (torch.zeros(0, TOP_N),) * 2
    keys = {"final_norm": _read_only(tp.final_norm), "ffn_input": _read_only(tp.at("ffn_norm_out", last))}
    return HiddenPass(ids=ids, keys=MappingProxyType(keys),
                      target_logprob=_read_only(-nll.astype(np.float64)),
                      top_ids=_read_only(top_ids.numpy().astype(np.int64)),
                      top_probs=_read_only(top_probs.numpy().astype(np.float64)))


@dataclass(frozen=True, eq=False)
class Memory:
    """The datastore: key i is the hidden state after document token i, value i is document token i + 1."""
    keys: np.ndarray      # [N, d_model], N = document tokens - 1
    values: np.ndarray    # [N] token ids

    @property
    def size(self) -> int:
        return int(self.values.size)


def build_memory(doc: HiddenPass, kind: str) -> Memory:
    """Keys from every document position that has a next token (the last one has none)."""
    return Memory(keys=_read_only(doc.keys[kind][:-1]), values=_read_only(np.asarray(doc.ids[1:], np.int64)))


@dataclass(frozen=True, eq=False)
class Neighbours:
    """For each query position, the nearest memory entries, closest first."""
    rows: np.ndarray        # [Q, K] memory rows
    distances: np.ndarray   # [Q, K] squared Euclidean distances


def nearest(memory: Memory, queries: np.ndarray, k: int = K_MAX) -> Neighbours:
    """Exact k-nearest search by squared L2 (the distance faiss's IndexFlatL2 returns): no index, no error.

    |q - m|^2 = |q|^2 - 2 q.m + |m|^2, in float64 so near-identical contexts get distances near 0, not noise.
    """
    k = max(1, min(int(k), memory.size))
    q = np.asarray(queries, np.float64)
    m = np.asarray(memory.keys, np.float64)
    d = np.maximum((q * q).sum(1)[:, None] - 2.0 * q @ m.T + (m * m).sum(1)[None, :], 0.0)
    part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < memory.size else np.tile(np.arange(memory.size), (len(q), 1))
    order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    return Neighbours(rows=_read_only(rows), distances=_read_only(np.take_along_axis(d, rows, axis=1)))


def neighbour_weights(distances: np.ndarray, k: int, temperature: float) -> np.ndarray:
    """softmax(-d / temperature) over the first k neighbours of each row: [Q, k], rows sum to 1."""
    d = np.asarray(distances, np.float64)[:, :k]
    z = -d / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    w = np.exp(z)
    return w / w.sum(axis=1, keepdims=True)


def knn_target_prob(memory: Memory, nb: Neighbours, targets, k: int, temperature: float) -> np.ndarray:
    """p_kNN(actual next token) at each query position: the weight of the neighbours whose value is it."""
    k = max(1, min(int(k), nb.rows.shape[1]))
    w = neighbour_weights(nb.distances, k, temperature)
    hits = memory.values[nb.rows[:, :k]] == np.asarray(targets, np.int64)[:, None]
    return (w * hits).sum(axis=1)


def knn_distribution(memory: Memory, nb: Neighbours, position: int, k: int,
                     temperature: float) -> dict[int, float]:
    """The whole p_kNN at one query position: token id -> probability (only retrieved tokens are non-zero)."""
    k = max(1, min(int(k), nb.rows.shape[1]))
    w = neighbour_weights(nb.distances[position:position + 1], k, temperature)[0]
    out: dict[int, float] = {}
    for row, weight in zip(nb.rows[position, :k], w):
        token = int(memory.values[row])
        out[token] = out.get(token, 0.0) + float(weight)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def mixed_logprob(lm_logprob: np.ndarray, knn_prob: np.ndarray, lam: float) -> np.ndarray:
    """log(lambda p_kNN + (1 - lambda) p_LM), in log space. lambda = 0 gives lm_logprob exactly
    (logaddexp(-inf, x) = x); lambda = 1 gives log p_kNN, -inf where the memory never saw the token."""
    lam = float(lam)
    with np.errstate(divide="ignore"):
        a = np.log(lam) + np.log(np.asarray(knn_prob, np.float64))
        b = np.log1p(-lam) + np.asarray(lm_logprob, np.float64)
    return np.logaddexp(a, b)


def perplexity_of(logprob: np.ndarray) -> float:
    """exp(mean negative log-likelihood); inf if any token got probability 0."""
    if logprob.size == 0:
        return float("nan")
    with np.errstate(over="ignore"):
        return float(np.exp(-np.mean(logprob)))


def perplexity_curve(lm_logprob: np.ndarray, knn_prob: np.ndarray, lambdas) -> np.ndarray:
    """The query's perplexity at each lambda: every point measured from the same cached pass."""
    return np.array([perplexity_of(mixed_logprob(lm_logprob, knn_prob, lam)) for lam in lambdas])


def faiss_nearest(memory: Memory, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The same search through faiss's exact IndexFlatL2 (used by the tests to hold `nearest` to the library)."""
    import faiss

    index = faiss.IndexFlatL2(memory.keys.shape[1])
    index.add(np.ascontiguousarray(memory.keys, np.float32))
    distances, rows = index.search(np.ascontiguousarray(queries, np.float32), min(int(k), memory.size))
    return rows, distances
