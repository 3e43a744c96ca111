"""FlashAttention's algorithm in numpy for one head: attention computed tile by tile with an online softmax.

Why tiles: naive attention writes the whole T x T score matrix, then its softmax, then multiplies by V. On a
GPU those matrices live in slow off-chip memory (HBM), and moving them costs more than the arithmetic.
FlashAttention (Dao et al. 2022) never forms them: it takes a block of queries, streams the keys and values
past it in blocks small enough for fast on-chip memory, and keeps per query row only a running maximum `m`,
a running sum `l` of exponentials and an unnormalised output. When a new block raises the maximum, what has
been accumulated so far is rescaled by exp(m_old - m_new), so the result is exactly softmax(QK^T/sqrt(d))V,
up to float rounding. Memory is then linear in T instead of quadratic.

The loop order here is FlashAttention-2's (queries outside, keys inside); under the causal mask, key blocks
that lie entirely after a query block's last row are skipped, which halves the work. On a CPU this Python loop
is slower than one big numpy matrix product: the win of the real kernel is GPU memory traffic, which a CPU
sweep cannot show. The sweep here measures time and peak allocated memory honestly and says which is which.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

BLOCK_SIZES = (16, 32, 64, 128)


def _check(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> None:
    if q.ndim != 2 or k.shape != v.shape or k.ndim != 2 or q.shape[1] != k.shape[1] or q.shape[0] != k.shape[0]:
        raise ValueError(f"one head: q, k, v of shape [T, d], got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[0] == 0:
        raise ValueError("attention needs at least one token")


def attention_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


def naive_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool = True) -> np.ndarray:
    """softmax(q k^T / sqrt(d) + mask) v, forming the whole [T, T] score and probability matrices."""
    _check(q, k, v)
    scores = (q @ k.T) * np.float32(attention_scale(q.shape[1]))
    if causal:   # a boolean [T, T] mask, as nanoGPT's masked_fill uses: a quarter of the scores' bytes
        positions = np.arange(q.shape[0])
        np.putmask(scores, positions[None, :] > positions[:, None], -np.inf)
    scores -= scores.max(axis=1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    return scores @ v


@dataclass(frozen=True, eq=False)
class TileStep:
    """The state of one query block after one key block has been folded in (arrays cover the block's rows)."""
    key_block: int
    key_start: int
    key_stop: int
    tile_max: np.ndarray        # [rows] the largest (masked) score of this tile per row; -inf if all masked
    running_max: np.ndarray     # [rows] m after this tile
    rescale: np.ndarray         # [rows] exp(m_before - m_after): how much the old sum and output shrink
    running_sum: np.ndarray     # [rows] l after this tile: sum of exp(score - m) over the keys seen so far
    output: np.ndarray          # [rows, d] the output so far, normalised: accumulator / l


@dataclass(frozen=True, eq=False)
class TiledAttention:
    output: np.ndarray          # [T, d]
    row_max: np.ndarray         # [T] final m per row
    row_sum: np.ndarray         # [T] final l per row: the softmax denominator is l * exp(m)
    block_q: int
    block_k: int
    tiles_computed: int
    tiles_skipped: int          # key blocks skipped because the causal mask hides them entirely
    watched_block: int | None
    steps: tuple[TileStep, ...]  # the watched query block's steps, one per computed key block

    @property
    def largest_tile_bytes(self) -> int:
        """The biggest intermediate the loop forms: one block_q x block_k tile of float32 scores."""
        return self.block_q * self.block_k * 4


def tiled_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, block_q: int = 64, block_k: int = 64,
                    causal: bool = True, watch: int | None = None) -> TiledAttention:
    """Attention by tiles with an online softmax; `watch` (a query block index) keeps that block's every step."""
    _check(q, k, v)
    if block_q < 1 or block_k < 1:
        raise ValueError("block sizes must be at least 1")
    length, dim = q.shape
    scale = np.float32(attention_scale(dim))
    output = np.empty((length, dim), dtype=np.float32)
    row_max = np.empty(length, dtype=np.float32)
    row_sum = np.empty(length, dtype=np.float32)
    computed = skipped = 0
    steps: list[TileStep] = []
    for qb, q_start in enumerate(range(0, length, block_q)):
        q_stop = min(q_start + block_q, length)
        q_tile = q[q_start:q_stop]
        rows = q_stop - q_start
        m = np.full(rows, -np.inf, dtype=np.float32)
        l = np.zeros(rows, dtype=np.float32)
        acc = np.zeros((rows, dim), dtype=np.float32)
        for kb, k_start in enumerate(range(0, length, block_k)):
            if causal and k_start > q_stop - 1:   # every key here comes after every query of the block
                skipped += 1
                continue
            k_stop = min(k_start + block_k, length)
            s = (q_tile @ k[k_start:k_stop].T) * scale
            if causal and k_stop - 1 > q_start:   # the tile crosses the diagonal: hide the later keys
                later = np.arange(k_start, k_stop)[None, :] > np.arange(q_start, q_stop)[:, None]
                s[later] = -np.inf
            tile_max = s.max(axis=1)
            m_new = np.maximum(m, tile_max)
            with np.errstate(invalid="ignore"):
                # m is finite from the first key block on (key 0 is visible to every query), so
                # exp(-inf - finite) = 0 below; the guard only silences the very first step's -inf - -inf.
                rescale = np.where(np.isneginf(m), np.float32(0), np.exp(m - m_new)).astype(np.float32)
            p = np.exp(s - m_new[:, None])
            l = rescale * l + p.sum(axis=1)
            acc = rescale[:, None] * acc + p @ v[k_start:k_stop]
            m = m_new
            computed += 1
            if qb == watch:
                steps.append(TileStep(key_block=kb, key_start=k_start, key_stop=k_stop, tile_max=tile_max,
                                      running_max=m.copy(), rescale=rescale, running_sum=l.copy(),
                                      output=acc / l[:, None]))
        output[q_start:q_stop] = acc / l[:, None]
        row_max[q_start:q_stop] = m
        row_sum[q_start:q_stop] = l
    return TiledAttention(output=output, row_max=row_max, row_sum=row_sum, block_q=block_q, block_k=block_k,
                          tiles_computed=computed, tiles_skipped=skipped, watched_block=watch, steps=tuple(steps))


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def head_vectors(q_rot: np.ndarray, k_rot: np.ndarray, v: np.ndarray, head: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One query head's q, k, v from a layer's traced arrays ([heads|kv_heads, T, d]), float32 copies.

    Grouped-query attention: query head h reads key/value head h // (heads / kv_heads).
    """
    share = q_rot.shape[0] // k_rot.shape[0]
    kv = head // share
    return (np.array(q_rot[head], dtype=np.float32), np.array(k_rot[kv], dtype=np.float32),
            np.array(v[kv], dtype=np.float32))


# --- the sweep: time and memory as the sequence grows --------------------------------------------------------

@dataclass(frozen=True)
class CostPoint:
    length: int
    naive_seconds: float
    tiled_seconds: float
    fused_seconds: float            # torch's scaled_dot_product_attention (a fused C++ kernel on this CPU)
    naive_peak_bytes: int           # tracemalloc's peak while naive attention ran (in a child process)
    tiled_peak_bytes: int
    score_matrix_bytes: int         # T x T float32: what naive attention must hold at least once
    max_difference: float           # tiled against naive on this point's data


@dataclass(frozen=True)
class CostSweep:
    points: tuple[CostPoint, ...]
    block: int
    head_dim: int
    requested: tuple[int, ...]
    measured_at: float
    fused_backend: str = "unknown"     # the kernel torch chose for the fused call, as torch reports it

    @property
    def stopped_early(self) -> bool:
        return len(self.points) < len(self.requested)


def sweep_lengths(longest: int, cap: int, shortest: int = 256) -> list[int]:
    """Doubling lengths from `shortest` up to min(longest, cap)."""
    top = max(shortest, min(int(longest), int(cap)))
    lengths, n = [], shortest
    while n <= top:
        lengths.append(n)
        n *= 2
    return lengths


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of a few runs: the least disturbed by other work on a shared machine."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes allocated through Python's allocators while `fn` runs (numpy's arrays are traced)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return max(0, int(tracemalloc.get_traced_memory()[1] - base))
    finally:
        tracemalloc.stop()


def _peaks_in_this_process(length: int, block: int, head_dim: int, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((length, head_dim), dtype=np.float32) for _ in range(3))
    return (_peak_bytes(lambda: naive_attention(q, k, v)),
            _peak_bytes(lambda: tiled_attention(q, k, v, block, block)))


def _peaks_main() -> None:
    """Entry point of the child process: JSON arguments on stdin, the two peaks as JSON on stdout."""
    args = json.loads(sys.stdin.read())
    print(json.dumps(_peaks_in_this_process(**args)))


def isolated_peak_bytes(length: int, block: int, head_dim: int = 64, seed: int = 0) -> tuple[int, int]:
    """(naive, tiled) peak bytes, each measured with tracemalloc in a fresh child process.

    Why a child process: tracemalloc counts every thread's allocations, and a server runs many threads (other
    readers' pages, other jobs); inside it, the small tiled peak would be buried under their noise. A child
    running only this computation reports its own allocations and nothing else. Timings stay in this process.
    """
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", "from engine.inside.flash_attention import _peaks_main; _peaks_main()"],
                          input=json.dumps(dict(length=int(length), block=int(block), head_dim=int(head_dim),
                                                seed=int(seed))),
                          capture_output=True, text=True, cwd=root, timeout=120, check=True)
    naive, tiled = json.loads(done.stdout.strip().splitlines()[-1])
    return int(naive), int(tiled)


def measure_costs(lengths: list[int], block: int, head_dim: int = 64, seed: int = 0, repeats: int = 3,
                  on_point: Callable[[int, int, CostPoint], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  work_gate: Callable[[], object] | None = None) -> CostSweep:
    """Time and weigh naive, tiled and fused attention for one causal head at each length.

    The data are random normal q, k, v (seeded): cost depends on the shapes, not on the values. `work_gate`
    (the CPU gate's context manager) is entered around each length, so other readers' work runs in between.
    """
    import contextlib

    import torch
    import torch.nn.functional as F
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    points: list[CostPoint] = []
    backend = "unknown"
    for i, length in enumerate(lengths):
        if should_stop is not None and should_stop():
            break
        q, k, v = (rng.standard_normal((length, head_dim), dtype=np.float32) for _ in range(3))
        tq, tk, tv = (torch.from_numpy(a)[None, None] for a in (q, k, v))
        # One BLAS thread, like one torch thread per pass under the CPU gate: all three run on one core.
        with (work_gate() if work_gate else contextlib.nullcontext()), threadpool_limits(1, user_api="blas"):
            if i == 0:   # first calls pay one-off costs (kernel selection, allocations): not part of any point
                F.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
                backend = fused_backend(tq, tk, tv)
            naive = naive_attention(q, k, v)
            tiled = tiled_attention(q, k, v, block, block).output
            naive_s = _best_time(lambda: naive_attention(q, k, v), repeats)
            tiled_s = _best_time(lambda: tiled_attention(q, k, v, block, block), repeats)
            fused_s = _best_time(lambda: F.scaled_dot_product_attention(tq, tk, tv, is_causal=True), repeats)
            naive_peak, tiled_peak = isolated_peak_bytes(length, block, head_dim, seed)
        point = CostPoint(length=length, naive_seconds=naive_s, tiled_seconds=tiled_s, fused_seconds=fused_s,
                          naive_peak_bytes=naive_peak, tiled_peak_bytes=tiled_peak,
                          score_matrix_bytes=length * length * 4, max_difference=max_abs_difference(naive, tiled))
        points.append(point)
        if on_point:
            on_point(i + 1, len(lengths), point)
    return CostSweep(points=tuple(points), block=block, head_dim=head_dim, requested=tuple(lengths),
                     measured_at=time.time(), fused_backend=backend)


def fused_backend(q, k, v) -> str:
    """The backend torch picks for a causal scaled_dot_product_attention on these tensors (e.g. FLASH_ATTENTION).

    `torch._fused_sdp_choice` is the dispatcher's own choice; it is private, so any failure reads "unknown".
    """
    try:
        import torch
        from torch.nn.attention import SDPBackend

        return SDPBackend(torch._fused_sdp_choice(q, k, v, is_causal=True)).name
    except Exception:
        return "unknown"
