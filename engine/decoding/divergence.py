"""How far apart two next-token distributions are: KL and Jensen-Shannon divergence, in bits.

KL(P || Q) = sum_i p_i log2(p_i / q_i) is the extra bits paid, per token, for coding text drawn from P with a code
built for Q. It is 0 only when P = Q, never negative, not symmetric, and infinite if Q gives 0 to a token P can
produce. Jensen-Shannon divergence compares both with their average M = (P + Q) / 2:
JS(P, Q) = KL(P || M) / 2 + KL(Q || M) / 2, which is symmetric, always finite and at most 1 bit (reached when P
and Q share no token at all). Its square root is a true distance (Endres and Schindelin 2003).

A language model's softmax never gives exactly 0 to any token, so KL between two of its distributions is finite.
"""
from __future__ import annotations

import numpy as np


def _as_distribution(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0 or np.any(p < 0) or not np.isfinite(p).all():
        raise ValueError("a distribution is a non-empty vector of non-negative numbers")
    total = p.sum()
    if total <= 0:
        raise ValueError("a distribution needs positive mass")
    return p / total


def kl_divergence_bits(p, q) -> float:
    """KL(P || Q) in bits. Terms with p_i = 0 contribute 0; p_i > 0 with q_i = 0 makes it infinite."""
    p, q = _as_distribution(p), _as_distribution(q)
    if p.shape != q.shape:
        raise ValueError("the two distributions must cover the same tokens")
    support = p > 0
    if np.any(q[support] == 0):
        return float("inf")
    return float(np.sum(p[support] * (np.log2(p[support]) - np.log2(q[support]))))


def js_divergence_bits(p, q) -> float:
    """Jensen-Shannon divergence in bits: symmetric, between 0 and 1."""
    p, q = _as_distribution(p), _as_distribution(q)
    m = (p + q) / 2
    return 0.5 * kl_divergence_bits(p, m) + 0.5 * kl_divergence_bits(q, m)


def total_variation(p, q) -> float:
    """Half the summed absolute difference: the most probability any set of tokens gains or loses (0 to 1)."""
    p, q = _as_distribution(p), _as_distribution(q)
    return float(0.5 * np.abs(p - q).sum())
