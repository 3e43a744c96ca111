"""A small selective state-space scan (Mamba-style) in numpy, its direct forms, and a measured cost per token.

The recurrence, per channel d and state n (A diagonal and negative, so exp(delta * A) is a decay in (0, 1)):

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * x_t        y_t = C_t . h_t

"Selective" means delta, B and C depend on the input token (Gu and Dao 2023). A large delta makes the state
forget what it held and take in the current token; a small delta keeps the state and mostly ignores the
token. With delta, B and C the same at every step the layer is linear and time-invariant, and the whole scan
equals one causal convolution of x with the kernel K_k = sum_n C_n exp(k delta A_n) delta B_n (S4's view).
Unrolling the recurrence in general gives y = M x with M[t, s] = sum_n C_t,n exp(A_n sum_{r=s+1..t} delta_r)
delta_s B_s,n: a T x T lower-triangular matrix, like an attention map, built from decays instead of a softmax
(Mamba-2's "state space duality"). The tests hold the scan to both forms.

The scan's memory is the state h: channels x states numbers, whatever the length. A transformer's is its KV
cache, which grows with every token. `measure_step_costs` times one decode step of each, at growing lengths,
with the same numpy on the same core.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True, eq=False)
class Scan:
    y: np.ndarray          # [T, D]
    state: np.ndarray      # [D, N], the final h: all the scan keeps, whatever T is


def _shapes(x, delta, A, B, C):
    x = np.asarray(x, dtype=np.float64)
    T, D = x.shape
    delta = np.asarray(delta, dtype=np.float64)
    delta = np.broadcast_to(delta[:, None] if delta.ndim == 1 else delta, (T, D))   # a number, [T] or [T, D]
    A = np.asarray(A, dtype=np.float64)
    N = A.shape[-1]
    A = np.broadcast_to(A.reshape(-1, N), (D, N))
    B = np.broadcast_to(np.asarray(B, dtype=np.float64), (T, N))   # a number, [N] or [T, N]
    C = np.broadcast_to(np.asarray(C, dtype=np.float64), (T, N))
    if np.any(A >= 0):
        raise ValueError("A must be negative so that exp(delta * A) decays")
    if np.any(delta < 0):
        raise ValueError("delta is a step size: it must not be negative")
    return x, delta, A, B, C


def selective_scan(x, delta, A, B, C) -> Scan:
    """The recurrence, step by step: x [T, D], delta [T, D] or [T], A [D, N] or [N], B and C [T, N] or [N]."""
    x, delta, A, B, C = _shapes(x, delta, A, B, C)
    T, D = x.shape
    h = np.zeros((D, A.shape[1]))
    y = np.empty((T, D))
    for t in range(T):
        h = np.exp(delta[t][:, None] * A) * h + (delta[t] * x[t])[:, None] * B[t][None, :]
        y[t] = h @ C[t]
    return Scan(y=y, state=h)


def convolution_kernel(length: int, delta: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """K [length, D] for a time-invariant layer: K_k = sum_n C_n exp(k delta A_n) delta B_n, per channel."""
    delta = np.asarray(delta, dtype=np.float64).reshape(-1)           # [D] (or one value for all channels)
    A = np.asarray(A, dtype=np.float64)
    A = A.reshape(-1, A.shape[-1])                                    # [D or 1, N]
    k = np.arange(length)[:, None, None]
    decay = np.exp(k * delta[None, :, None] * A[None])                # [length, D, N]
    return (decay * (delta[None, :, None] * np.asarray(B, dtype=np.float64)) * np.asarray(C, dtype=np.float64)
            ).sum(-1)


def convolution_form(x, delta, A, B, C) -> np.ndarray:
    """y for constant delta, B and C (no selection): a causal convolution of each channel with its kernel."""
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[0]
    K = convolution_kernel(T, delta, A, B, C)
    K = np.broadcast_to(K, (T, x.shape[1]))
    y = np.zeros_like(x)
    for t in range(T):
        y[t] = (K[:t + 1][::-1] * x[:t + 1]).sum(0)   # sum_k K_k x_{t-k}
    return y


def mixing_matrix(delta, A, B, C, channel: int = 0) -> np.ndarray:
    """M [T, T] of one channel, y = M x: M[t, s] = sum_n C_t,n exp(A_n sum_{s<r<=t} delta_r) delta_s B_s,n."""
    delta = np.asarray(delta, dtype=np.float64)
    delta = delta[:, channel] if delta.ndim == 2 else delta
    A = np.asarray(A, dtype=np.float64)
    a = A.reshape(-1, A.shape[-1])[min(channel, A.reshape(-1, A.shape[-1]).shape[0] - 1)]   # [N]
    T = len(delta)
    B = np.broadcast_to(np.asarray(B, dtype=np.float64), (T, a.size))
    C = np.broadcast_to(np.asarray(C, dtype=np.float64), (T, a.size))
    cumulative = np.concatenate([[0.0], np.cumsum(delta)])            # sum of delta_1..t at index t
    gap = cumulative[1:, None] - cumulative[None, 1:]                 # [t, s]: sum_{s<r<=t} delta_r
    later = np.triu(np.ones((T, T), dtype=bool), 1)
    gap = np.where(later, 0.0, gap)
    decay = np.exp(gap[:, :, None] * a[None, None, :])                # [T, T, N]
    M = (C[:, None, :] * decay * (delta[None, :, None] * B[None, :, :])).sum(-1)
    return np.where(later, 0.0, M)


def unrolled_form(x, delta, A, B, C) -> np.ndarray:
    """y computed directly, without a recurrence: y[:, d] = M_d x[:, d] for every channel."""
    x, delta, A, B, C = _shapes(x, delta, A, B, C)
    return np.stack([mixing_matrix(delta[:, d], A[d], B, C) @ x[:, d] for d in range(x.shape[1])], axis=1)


def retention(delta: np.ndarray, decay_rate: float) -> np.ndarray:
    """W [T, T]: how much of token s is still in a one-number state at step t (B = C = 1, A = -decay_rate).

    W[t, s] = delta_s exp(-decay_rate * sum_{s<r<=t} delta_r): written with weight delta_s, then shrunk at every
    later step, more by steps whose delta is large.
    """
    return mixing_matrix(np.asarray(delta, dtype=np.float64), np.array([-abs(decay_rate)]), 1.0, 1.0)


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def selective_deltas(surprise: np.ndarray, selectivity: float, base: float = 0.5) -> np.ndarray:
    """delta_t = softplus(bias + selectivity * z_t), z_t the token's surprise standardised over the text.

    Mamba computes delta from the token through a learned projection and a softplus; here the one input feature
    is how surprising the real model found the token. Selectivity 0 gives every token the same delta (no
    selection), softplus(bias) = `base`.
    """
    surprise = np.asarray(surprise, dtype=np.float64)
    spread = surprise.std()
    z = (surprise - surprise.mean()) / spread if spread > 0 else np.zeros_like(surprise)
    bias = math.log(math.expm1(base))          # softplus(bias) == base
    return softplus(bias + selectivity * z)


# --- cost per decode step, attention against the scan ---------------------------------------------------------

@dataclass(frozen=True)
class StepCost:
    context: int
    attention_ms: float         # one new token attending over `context` cached keys and values (one layer)
    scan_ms: float              # one step of the scan (one layer)
    kv_bytes: int               # that layer's key and value arrays at this context
    state_bytes: int            # the scan's state: the same at every context


@dataclass(frozen=True)
class StepCosts:
    points: tuple[StepCost, ...]
    heads: int
    kv_heads: int
    head_dim: int
    channels: int
    states: int
    requested: tuple[int, ...]
    measured_at: float

    @property
    def stopped_early(self) -> bool:
        return len(self.points) < len(self.requested)


def step_lengths(longest: int, cap: int, shortest: int = 256) -> list[int]:
    top = max(shortest, min(int(longest), int(cap)))
    lengths, n = [], shortest
    while n <= top:
        lengths.append(n)
        n *= 4
    return lengths if lengths[-1] == top else [*lengths, top]


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def attention_step(q: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """One decode step of grouped-query attention: q [heads, d], keys and values [kv_heads, T, d]."""
    heads, dim = q.shape
    groups = q.reshape(keys.shape[0], heads // keys.shape[0], dim)            # query heads sharing a KV head
    scores = groups @ keys.transpose(0, 2, 1) / np.float32(math.sqrt(dim))   # [kv_heads, share, T]
    scores -= scores.max(-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(-1, keepdims=True)
    return (weights @ values).reshape(heads, dim)


def scan_step(h: np.ndarray, x: np.ndarray, delta: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray):
    """One decode step of the scan: the new state and the output (h [D, N], x and delta [D], B and C [N])."""
    h = np.exp(delta[:, None] * A) * h + (delta * x)[:, None] * B[None, :]
    return h, h @ C


def measure_step_costs(lengths: list[int], heads: int, kv_heads: int, head_dim: int, channels: int, states: int,
                       repeats: int = 5, seed: int = 0, on_point: Callable[[int, int, StepCost], None] | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       work_gate: Callable[[], object] | None = None) -> StepCosts:
    """Time one decode step of an attention layer (cache of each length) and of a scan layer, in float32 numpy.

    Random values: the cost depends on the shapes only. One BLAS thread, like one torch thread per pass.
    """
    import contextlib

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    q = rng.standard_normal((heads, head_dim), dtype=np.float32)
    h = np.zeros((channels, states), dtype=np.float32)
    x, delta = rng.standard_normal(channels, dtype=np.float32), np.full(channels, 0.1, dtype=np.float32)
    A = -np.tile(np.arange(1, states + 1, dtype=np.float32), (channels, 1))
    B, C = rng.standard_normal(states, dtype=np.float32), rng.standard_normal(states, dtype=np.float32)
    points: list[StepCost] = []
    for i, length in enumerate(lengths):
        if i > 0 and should_stop is not None and should_stop():
            break
        keys = rng.standard_normal((kv_heads, length, head_dim), dtype=np.float32)
        values = rng.standard_normal((kv_heads, length, head_dim), dtype=np.float32)
        with (work_gate() if work_gate else contextlib.nullcontext()), threadpool_limits(1, user_api="blas"):
            attention_step(q, keys, values)   # warm the caches and the allocator once
            attention_ms = _best_ms(lambda: attention_step(q, keys, values), repeats)
            scan_ms = _best_ms(lambda: scan_step(h, x, delta, A, B, C), repeats)
        point = StepCost(context=length, attention_ms=attention_ms, scan_ms=scan_ms,
                         kv_bytes=keys.nbytes + values.nbytes, state_bytes=h.nbytes)
        points.append(point)
        if on_point:
            on_point(i + 1, len(lengths), point)
    return StepCosts(points=tuple(points), heads=heads, kv_heads=kv_heads, head_dim=head_dim, channels=channels,
                     states=states, requested=tuple(lengths), measured_at=time.time())
