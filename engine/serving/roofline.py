"""This machine's roofline, measured, and where the live model's prefill and decode passes sit on it.

A roofline (Williams, Waterman and Patterson 2009) bounds how fast a computation can run on one machine by two
numbers: the peak arithmetic rate (FLOP/s) and the memory bandwidth (bytes/s). A computation that does I
floating-point operations per byte it moves (its arithmetic intensity) can at best run at
min(peak, bandwidth x I). Left of the ridge (I < peak / bandwidth) memory is the limit; right of it, arithmetic.

Three parts:
- micro-benchmarks, short and through the CPU gate, run once per process and kept (`machine_peaks`): a float32
  matrix product for the peak rate, the sum of a 256 MB tensor for the read bandwidth. They run on the same
  number of torch threads as every model pass here, so the ceilings are those a pass actually has;
- the model's work per pass, counted from the live model's own modules (`work_profile`): the FLOPs of every
  matrix product and of attention, and the fewest bytes a pass must move (every weight once, the KV cache read
  and written). Their ratio is the pass's arithmetic intensity;
- measured passes (`measure_passes`): prefill of n tokens into a fresh cache with logits for the last position
  only (what a server computes), at several lengths, and single-token decode steps at batch 1 and larger
  batches, each the median of several timed runs.
"""
from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from engine.runtime.gate import model_work
from engine.serving.kv_cache import kv_bytes_per_token, live_element_size, live_spec
from engine.model.live_model import LiveModel

MATMUL_SIZE = 1024          # 2 x 1024^3 = 2.1 GFLOP per product: a few tens of ms on one core
MATMUL_SECONDS = 0.3        # keep multiplying for this long (at least MIN_RUNS products), keep the best rate
READ_MEGABYTES = 256        # far larger than any CPU cache, so the sum streams from main memory
READ_RUNS = 4
MIN_RUNS = 3


# ----------------------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MachinePeaks:
    """The two ceilings of this machine's roofline, as measured."""
    flops_per_s: float                 # best float32 matmul rate
    bytes_per_s: float                 # best read rate of a large tensor
    threads: int                       # torch threads the benchmarks (and every model pass) ran on
    matmul_size: int
    matmul_rates: tuple[float, ...]    # FLOP/s of each timed product
    read_bytes: int
    read_rates: tuple[float, ...]      # bytes/s of each timed sum
    seconds: float                     # wall time the two benchmarks took
    measured_at: float

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (FLOP per byte) where the two roofs meet."""
        return self.flops_per_s / self.bytes_per_s

    def attainable(self, intensity: float) -> float:
        """The roofline: the best FLOP/s a computation of this intensity can reach here."""
        return min(self.flops_per_s, self.bytes_per_s * float(intensity))


def matmul_rates(size: int = MATMUL_SIZE, seconds: float = MATMUL_SECONDS, min_runs: int = MIN_RUNS) -> list[float]:
    """FLOP/s of repeated float32 products of two size x size matrices (2 size^3 FLOPs each), one warm-up first."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)   # warm-up: the first call pays for allocations and kernel selection
    rates, began = [], time.perf_counter()
    while len(rates) < min_runs or time.perf_counter() - began < seconds:
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2.0 * size ** 3 / (time.perf_counter() - started))
    return rates


def read_rates(megabytes: int = READ_MEGABYTES, runs: int = READ_RUNS) -> tuple[int, list[float]]:
    """(bytes read, bytes/s of each run) for summing a float32 tensor of `megabytes` MB; one warm-up first.

    A sum does one addition per 4 bytes, far below what a core can add, so its speed is the memory's.
    """
    tensor = torch.ones(megabytes * 2**20 // 4)
    size = tensor.numel() * tensor.element_size()
    tensor.sum()
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        tensor.sum()
        rates.append(size / (time.perf_counter() - started))
    return size, rates


def measure_machine(size: int = MATMUL_SIZE, megabytes: int = READ_MEGABYTES) -> MachinePeaks:
    """Both micro-benchmarks in one pass through the CPU gate (about half a second), best run of each."""
    with model_work():
        started = time.perf_counter()
        flops = matmul_rates(size)
        read_bytes, reads = read_rates(megabytes)
        seconds = time.perf_counter() - started
        threads = torch.get_num_threads()
    return MachinePeaks(flops_per_s=max(flops), bytes_per_s=max(reads), threads=threads, matmul_size=size,
                        matmul_rates=tuple(flops), read_bytes=read_bytes, read_rates=tuple(reads), seconds=seconds,
                        measured_at=time.time())


def better_of(old: MachinePeaks, new: MachinePeaks) -> MachinePeaks:
    """Each ceiling from whichever measurement reached higher. A ceiling is a best case: other work on a shared
    machine can only slow a benchmark down, so a lower second reading says "busy", not "slower machine"."""
    flops, reads = max(old, new, key=lambda p: p.flops_per_s), max(old, new, key=lambda p: p.bytes_per_s)
    return replace(new, flops_per_s=flops.flops_per_s, matmul_rates=flops.matmul_rates, matmul_size=flops.matmul_size,
                   bytes_per_s=reads.bytes_per_s, read_rates=reads.read_rates, read_bytes=reads.read_bytes)


_peaks: MachinePeaks | None = None
_peaks_lock = threading.Lock()


def machine_peaks(refresh: bool = False) -> MachinePeaks:
    """The process's measurement, made on first use and kept (the machine does not change); `refresh` measures
    again and keeps the better reading of each ceiling."""
    global _peaks
    with _peaks_lock:
        if _peaks is None:
            _peaks = measure_machine()
        elif refresh:
            _peaks = better_of(_peaks, measure_machine())
        return _peaks


# ----------------------------------------------------------------------------------------------------------
# The model's work per pass
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkProfile:
    """What one forward pass of the live model computes and must move, read from its modules."""
    name: str
    layers: int
    heads: int
    head_dim: int
    block_matmul_params: int   # weights of every block's q, k, v, o, gate, up and down projections
    head_params: int           # the output head (tied to the embedding, so also the largest single matrix)
    weight_bytes: int          # every distinct parameter tensor x its element size: what a pass reads once
    kv_bytes_per_token: int    # 2 x layers x KV heads x head size x element size
    element_size: int

    def flops(self, new_tokens: int, cached_tokens: int = 0, sequences: int = 1, logit_tokens: int = 1) -> float:
        """FLOPs of one pass: `sequences` sequences, each feeding `new_tokens` after `cached_tokens` in its cache.

        Matrix products cost 2 FLOPs per weight per token (a multiply and an add). Attention costs
        4 x heads x head_dim per (query, key) pair (scores, then the weighted sum of values); causal, so the
        i-th new token sees the cached tokens, the new ones before it and itself. Norms, RoPE, SiLU and softmax
        are left out: a few FLOPs per number, against hundreds per weight. `logit_tokens` is how many positions
        per sequence get logits (1 in a server's prefill and decode; all of them when scoring a text).
        """
        linear = 2.0 * sequences * (new_tokens * self.block_matmul_params + logit_tokens * self.head_params)
        pairs = new_tokens * cached_tokens + new_tokens * (new_tokens + 1) / 2
        attention = 4.0 * self.layers * self.heads * self.head_dim * pairs * sequences
        return linear + attention

    def bytes_moved(self, new_tokens: int, cached_tokens: int = 0, sequences: int = 1) -> float:
        """The fewest bytes a pass must move: every weight read once, each sequence's cache read and its new keys
        and values written. Activations are assumed to stay in the CPU caches (a lower bound on traffic)."""
        return self.weight_bytes + float(sequences) * self.kv_bytes_per_token * (cached_tokens + new_tokens)

    def intensity(self, new_tokens: int, cached_tokens: int = 0, sequences: int = 1) -> float:
        """FLOPs per byte moved: the x position of the pass on the roofline."""
        return self.flops(new_tokens, cached_tokens, sequences) / self.bytes_moved(new_tokens, cached_tokens, sequences)


def work_profile(lm: LiveModel) -> WorkProfile:
    """Counted from the live model's own modules and config, never typed in."""
    model = lm.model
    block = sum(m.weight.numel() for layer in model.model.layers for m in layer.modules()
                if isinstance(m, torch.nn.Linear))
    spec = live_spec(lm)
    element = live_element_size(lm)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())   # tied weights are one tensor
    return WorkProfile(name=lm.card.name, layers=spec.layers, heads=spec.heads, head_dim=spec.head_dim,
                       block_matmul_params=block, head_params=model.lm_head.weight.numel(), weight_bytes=weights,
                       kv_bytes_per_token=int(kv_bytes_per_token(spec, element)), element_size=element)


# ----------------------------------------------------------------------------------------------------------
# Measured passes
# ----------------------------------------------------------------------------------------------------------

MAX_PREFILL = 512
DECODE_BATCHES = (1, 4, 16)


def prefill_lengths(longest: int) -> list[int]:
    """Powers of 4 from 1 below `longest` (bounded to 1..MAX_PREFILL), and `longest` itself: 1, 4, 16, 64, 256."""
    longest = max(1, min(int(longest), MAX_PREFILL))
    points, n = set(), 1
    while n < longest:
        points.add(n)
        n *= 4
    return sorted(points | {longest})


@dataclass(frozen=True)
class PrefillPoint:
    tokens: int
    runs: tuple[float, ...]      # seconds of each timed pass

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass(frozen=True)
class DecodePoint:
    batch: int                   # sequences decoded together, one new token each per step
    context: int                 # tokens in each sequence's cache before the first timed step
    runs: tuple[float, ...]      # seconds of each timed step

    @property
    def seconds(self) -> float:
        return statistics.median(self.runs)

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.seconds

    @property
    def mid_context(self) -> float:
        """Cached tokens at the middle step: the context the median step saw, near enough."""
        return self.context + (len(self.runs) - 1) / 2


@dataclass(frozen=True)
class PassTimings:
    prefill: tuple[PrefillPoint, ...]
    decode: tuple[DecodePoint, ...]      # batch 1 first
    threads: int
    measured_at: float
    stopped_early: bool = False

    @property
    def single_decode(self) -> DecodePoint | None:
        return next((d for d in self.decode if d.batch == 1), None)


Progress = Callable[[float, str], None]


def _timed(fn) -> float:
    """Seconds of `fn()` inside one pass through the gate: the wait for the gate is not counted."""
    with model_work():
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started


def measure_passes(lm: LiveModel, ids: list[int], lengths: list[int], context: int, decode_steps: int = 12,
                   batches: tuple[int, ...] = DECODE_BATCHES, repeats: int = 3, on_progress: Progress | None = None,
                   should_stop: Callable[[], bool] | None = None) -> PassTimings:
    """Time prefill at each length (median of `repeats`) and decode steps at each batch size (median of steps).

    `ids` (a real text's tokens) are repeated to the longest length: which tokens they are does not change the
    arithmetic of a dense model, only how many. Decode runs after a prefill of `context` tokens (untimed), at
    batch 1 greedily, then with the cache copied to each larger batch. Each timed pass goes through the gate
    alone, so other readers' work runs between them. A stop request (or the job's time budget) ends the
    measurement after the current point; what was measured is returned.
    """
    from transformers import DynamicCache

    if not ids:
        raise ValueError("no tokens to feed")
    report = on_progress or (lambda fraction, message: None)
    stop = should_stop or (lambda: False)
    lengths = sorted({max(1, min(int(n), MAX_PREFILL)) for n in lengths})
    context = max(1, min(int(context), MAX_PREFILL))
    stream = (list(ids) * (max(lengths + [context]) // len(ids) + 1))
    model = lm.model
    new_cache = lambda: DynamicCache(config=model.config)   # noqa: E731

    def prefill(n: int, cache) -> torch.Tensor:
        return model(torch.tensor([stream[:n]]), past_key_values=cache, use_cache=True, logits_to_keep=1).logits

    report(0.0, "Warming up the model...")
    with model_work():   # untimed: the first passes in a process pay one-off costs
        warm = new_cache()
        prefill(8, warm)
        model(torch.tensor([[stream[8]]]), past_key_values=warm, use_cache=True)
        del warm
    total = len(lengths) + len(batches)
    prefill_points: list[PrefillPoint] = []
    stopped = False
    for i, n in enumerate(lengths):
        if stop():
            stopped = True
            break
        report(i / total, f"Prefill of {n} tokens ({i + 1} of {len(lengths)} lengths), {repeats} timed passes")
        runs = tuple(_timed(lambda: prefill(n, new_cache())) for _ in range(repeats))
        prefill_points.append(PrefillPoint(n, runs))

    decode_points: list[DecodePoint] = []
    if not stopped:
        base = new_cache()
        with model_work():
            next_id = int(prefill(context, base)[0, -1].argmax())
        for j, batch in enumerate(batches):
            if stop():
                stopped = True
                break
            report((len(lengths) + j) / total, f"Decode steps at batch {batch}")
            cache = _copy_cache(base, batch)
            feed = torch.full((batch, 1), next_id)
            runs = []
            steps = decode_steps if batch == 1 else max(3, decode_steps // 3)   # big batches: fewer, slower steps
            for _ in range(steps):
                holder = {}

                def step() -> None:
                    holder["logits"] = model(feed, past_key_values=cache, use_cache=True).logits

                runs.append(_timed(step))
                feed = holder["logits"][:, -1].argmax(-1, keepdim=True)   # greedy: each row continues its text
            decode_points.append(DecodePoint(batch, context, tuple(runs)))
    report(1.0, "Done")
    return PassTimings(prefill=tuple(prefill_points), decode=tuple(decode_points), threads=torch.get_num_threads(),
                       measured_at=time.time(), stopped_early=stopped)


def _copy_cache(cache, batch: int):
    """An independent copy of a batch-1 cache, repeated to `batch` rows (every row then holds the same context)."""
    import copy

    copied = copy.deepcopy(cache)
    if batch > 1:
        copied.batch_repeat_interleave(batch)
    return copied
