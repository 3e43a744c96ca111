"""The KV cache measured on the live model, and its size computed for published model configurations.

Three things live here:
- `compare_generation`: greedy generation run with and without the cache, step by step, timed;
- `measure_cache_growth`: the real DynamicCache tensors summed in bytes as the token count grows;
- the calculator: 2 x layers x kv_heads x head_dim x bytes x tokens x batch for known configurations.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode

# Bytes per stored value. int4 packs two values into a byte; fp8 and int8 take one.
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
DEFAULT_DTYPE = "fp16"

# Bounds for anything a user (or a URL) can set; the numbers stay finite and the page stays responsive.
MAX_LAYERS, MAX_HEADS, MAX_HEAD_DIM = 512, 1024, 4096
MAX_BATCH, MAX_TOKENS = 4096, 10_000_000
MAX_NEW_TOKENS = 256


# ----------------------------------------------------------------------------------------------------------
# Formula and calculator
# ----------------------------------------------------------------------------------------------------------

def _bounded_int(value: object, low: int, high: int, default: int) -> int:
    """Any value (a URL string, a float, None) to an int in [low, high]; unreadable values give `default`."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    if math.isnan(number):
        return default
    if math.isinf(number):
        return high if number > 0 else low
    return int(min(max(number, low), high))


def dtype_bytes(name: object) -> float:
    return DTYPE_BYTES.get(str(name), DTYPE_BYTES[DEFAULT_DTYPE])


@dataclass(frozen=True)
class ModelSpec:
    """The numbers of a decoder's config.json that decide its KV-cache and weight sizes."""
    name: str
    layers: int
    heads: int              # query heads
    kv_heads: int           # key/value heads: = heads for MHA, fewer for GQA, 1 for MQA
    head_dim: int
    context: int | None = None      # max_position_embeddings
    hidden: int | None = None
    ffn: int | None = None          # intermediate_size (SwiGLU: gate, up and down matrices)
    vocab: int | None = None
    tied_embeddings: bool = False
    parameters: int | None = None   # when measured rather than computed from the config
    source: str = ""

    def bounded(self) -> "ModelSpec":
        """The same spec with every size clamped to a sane range (user-defined configs come from the URL)."""
        layers = _bounded_int(self.layers, 1, MAX_LAYERS, 32)
        heads = _bounded_int(self.heads, 1, MAX_HEADS, 32)
        kv_heads = min(_bounded_int(self.kv_heads, 1, MAX_HEADS, 8), heads)
        return replace(self, layers=layers, heads=heads, kv_heads=kv_heads,
                       head_dim=_bounded_int(self.head_dim, 1, MAX_HEAD_DIM, 128))

    @property
    def attention(self) -> str:
        if self.kv_heads == self.heads:
            return "MHA"
        return "MQA" if self.kv_heads == 1 else "GQA"

    @property
    def parameter_count(self) -> int | None:
        """Measured if known, else counted from the config for a LLaMA-style block; None if the config is partial."""
        if self.parameters is not None:
            return self.parameters
        if None in (self.hidden, self.ffn, self.vocab):
            return None
        return llama_parameter_count(self.hidden, self.layers, self.heads, self.kv_heads, self.head_dim,
                                     self.ffn, self.vocab, self.tied_embeddings)

    def with_kv_heads(self, kv_heads: int) -> "ModelSpec":
        return replace(self, kv_heads=kv_heads)


def llama_parameter_count(hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int, ffn: int,
                          vocab: int, tied_embeddings: bool) -> int:
    """Weights of a LLaMA-style decoder (no biases): embeddings, per block q/k/v/o, SwiGLU and two RMSNorms."""
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    block = attention + 3 * hidden * ffn + 2 * hidden
    embeddings = vocab * hidden * (1 if tied_embeddings else 2)
    return layers * block + embeddings + hidden  # + the final norm


def kv_bytes_per_token(spec: ModelSpec, bytes_per_value: float) -> float:
    """2 (K and V) x layers x kv_heads x head_dim x bytes: what one token of one sequence adds to the cache."""
    return 2 * spec.layers * spec.kv_heads * spec.head_dim * float(bytes_per_value)


def kv_cache_bytes(spec: ModelSpec, bytes_per_value: float, tokens: int, batch: int = 1) -> float:
    tokens = _bounded_int(tokens, 0, MAX_TOKENS, 0)
    batch = _bounded_int(batch, 1, MAX_BATCH, 1)
    return kv_bytes_per_token(spec, bytes_per_value) * tokens * batch


def weight_bytes(spec: ModelSpec, bytes_per_value: float) -> float | None:
    count = spec.parameter_count
    return None if count is None else count * float(bytes_per_value)


def spec_from_config(config, name: str, source: str, parameters: int | None = None) -> ModelSpec:
    """A ModelSpec read from a transformers config object (the live model's own)."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelSpec(name=name, layers=config.num_hidden_layers, heads=heads,
                     kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
                     context=config.max_position_embeddings, hidden=config.hidden_size,
                     ffn=config.intermediate_size, vocab=config.vocab_size,
                     tied_embeddings=bool(config.tie_word_embeddings), parameters=parameters, source=source)


# Published configurations: the values of each model's config.json on the Hugging Face Hub (the same
# numbers as in the papers' architecture tables).
PUBLISHED: tuple[ModelSpec, ...] = (
    ModelSpec("LLaMA-2-7B", layers=32, heads=32, kv_heads=32, head_dim=128, context=4096, hidden=4096,
              ffn=11008, vocab=32000, source="meta-llama/Llama-2-7b-hf config.json; Touvron et al. 2023, Llama 2"),
    ModelSpec("LLaMA-2-70B", layers=80, heads=64, kv_heads=8, head_dim=128, context=4096, hidden=8192,
              ffn=28672, vocab=32000, source="meta-llama/Llama-2-70b-hf config.json; Touvron et al. 2023, Llama 2"),
    ModelSpec("LLaMA-3-8B", layers=32, heads=32, kv_heads=8, head_dim=128, context=8192, hidden=4096,
              ffn=14336, vocab=128256, source="meta-llama/Meta-Llama-3-8B config.json; Meta, Llama 3 model card 2024"),
    ModelSpec("Mistral-7B", layers=32, heads=32, kv_heads=8, head_dim=128, context=32768, hidden=4096,
              ffn=14336, vocab=32000,
              source="mistralai/Mistral-7B-v0.1 config.json (sliding window 4096); Jiang et al. 2023, Mistral 7B"),
)


def live_spec(lm: LiveModel) -> ModelSpec:
    return spec_from_config(lm.model.config, lm.card.name, "read from the live model's config",
                            parameters=lm.card.parameters)


def live_element_size(lm: LiveModel) -> int:
    """Bytes per value of the live model's tensors (float32 here), read from its weights."""
    return next(lm.model.parameters()).element_size()


# ----------------------------------------------------------------------------------------------------------
# The real cache tensors
# ----------------------------------------------------------------------------------------------------------

def cache_tensor_bytes(cache) -> int:
    """Bytes held by every layer's key and value tensors: numel x element size, summed."""
    total = 0
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):
            if tensor is not None and tensor.numel():
                total += tensor.numel() * tensor.element_size()
    return total


@dataclass(frozen=True)
class CacheGrowth:
    tokens: list[int]
    measured_bytes: list[int]        # summed over the real tensors after each chunk
    formula_bytes: list[float]       # 2 x layers x kv_heads x head_dim x bytes x tokens x batch
    key_shape: tuple[int, ...]       # one layer's key tensor at the last measurement
    layers: int
    dtype: str
    element_size: int
    spec: ModelSpec

    @property
    def per_token_formula(self) -> float:
        return kv_bytes_per_token(self.spec, self.element_size)

    @property
    def per_token_measured(self) -> float:
        return self.measured_bytes[-1] / self.tokens[-1]

    @property
    def matches(self) -> bool:
        return all(m == f for m, f in zip(self.measured_bytes, self.formula_bytes))


def growth_points(max_tokens: int) -> list[int]:
    """1, then doubling from 16 up to `max_tokens`."""
    max_tokens = _bounded_int(max_tokens, 1, 8192, 512)
    points, n = [1], 16
    while n < max_tokens:
        points.append(n)
        n *= 2
    return sorted({*points, max_tokens})


def measure_cache_growth(lm: LiveModel, ids: list[int], points: list[int]) -> CacheGrowth:
    """Feed `ids` (tiled to the largest point) into one DynamicCache chunk by chunk and weigh it at each point.

    The cache grows exactly as in generation: every chunk appends its keys and values to each layer.
    """
    from transformers import DynamicCache

    if not ids:
        raise ValueError("the cache needs at least one token")
    points = sorted({p for p in points if p >= 1})
    stream = (list(ids) * (points[-1] // len(ids) + 1))[:points[-1]]
    spec = live_spec(lm)
    element_size = live_element_size(lm)
    cache = DynamicCache(config=lm.model.config)
    measured, fed = [], 0
    with model_work():   # one pass through the gate for all chunks: together they are one short pass
        for point in points:
            lm.model(torch.tensor([stream[fed:point]]), past_key_values=cache, use_cache=True)
            fed = point
            measured.append(cache_tensor_bytes(cache))
    return CacheGrowth(tokens=points, measured_bytes=measured,
                       formula_bytes=[kv_cache_bytes(spec, element_size, p, 1) for p in points],
                       key_shape=tuple(cache.layers[0].keys.shape), layers=len(cache.layers),
                       dtype=str(cache.layers[0].keys.dtype).replace("torch.", ""),
                       element_size=element_size, spec=spec)


# ----------------------------------------------------------------------------------------------------------
# Generation with and without the cache, timed
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimedRun:
    use_cache: bool
    new_ids: list[int]
    step_seconds: list[float]    # step 0 includes the prompt (prefill)
    tokens_fed: list[int]        # tokens the model processed at each step
    cache_bytes: list[int]       # cache size after each step (0 without a cache)

    @property
    def total_seconds(self) -> float:
        return float(sum(self.step_seconds))

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens per second after the first step (which also reads the prompt)."""
        decode_steps = self.step_seconds[1:]
        return len(decode_steps) / sum(decode_steps) if decode_steps and sum(decode_steps) > 0 else 0.0


@dataclass(frozen=True)
class CacheComparison:
    prompt_ids: list[int]
    cached: TimedRun
    uncached: TimedRun
    new_text: str
    measured_at: float           # time.time() when the measurement finished
    requested: int = 0           # tokens asked for; fewer were generated if the time budget ran out

    @property
    def stopped_early(self) -> bool:
        return len(self.cached.new_ids) < self.requested

    @property
    def identical(self) -> bool:
        return self.cached.new_ids == self.uncached.new_ids

    @property
    def first_difference(self) -> int | None:
        for i, (a, b) in enumerate(zip(self.cached.new_ids, self.uncached.new_ids)):
            if a != b:
                return i
        return None if len(self.cached.new_ids) == len(self.uncached.new_ids) else min(
            len(self.cached.new_ids), len(self.uncached.new_ids))

    @property
    def speedup(self) -> float:
        return self.uncached.total_seconds / self.cached.total_seconds if self.cached.total_seconds > 0 else 0.0

    @property
    def noisy(self) -> bool:
        """True when other work on the machine visibly disturbed the timing.

        The work per step is constant with the cache and grows smoothly without it, so a decode step more
        than 3x the median of its neighbours can only be interference. Two or more such spikes count.
        """
        return _spikes(self.cached.step_seconds[1:]) + _spikes(self.uncached.step_seconds[1:]) >= 2

    def cumulative_speedup(self) -> list[float]:
        out, with_cache, without = [], 0.0, 0.0
        for a, b in zip(self.cached.step_seconds, self.uncached.step_seconds):
            with_cache, without = with_cache + a, without + b
            out.append(without / with_cache if with_cache > 0 else 0.0)
        return out


def _spikes(seconds: list[float], window: int = 3) -> int:
    count = 0
    for i, value in enumerate(seconds):
        neighbours = sorted(seconds[max(0, i - window):i + window + 1])
        if len(neighbours) >= 3 and value > 3 * neighbours[(len(neighbours) - 1) // 2]:
            count += 1
    return count


StepReport = Callable[[int, int, float, float], None]   # (step done, steps, seconds with, seconds without)


def compare_generation(lm: LiveModel, ids: list[int], max_new_tokens: int, on_step: StepReport | None = None,
                       time_budget_s: float | None = None,
                       should_stop: Callable[[], bool] | None = None) -> CacheComparison:
    """Greedy generation of `max_new_tokens` tokens twice: with a DynamicCache, and re-running the whole sequence.

    The two runs advance in lockstep (one cached step, then one uncached step) so that both see the same
    load on a shared server. Generation does not stop at end-of-text: both curves cover every step. With a
    time budget, the runs stop (after at least 4 steps) once it is spent, so a busy server stays responsive;
    `should_stop` (a job's stop request) ends them the same way. The CPU gate is passed once per step pair,
    so other readers' passes run between steps, and the time spent waiting for it is not counted.
    """
    from transformers import DynamicCache

    if not ids:
        raise ValueError("the prompt is empty")
    steps = _bounded_int(max_new_tokens, 1, MAX_NEW_TOKENS, 1)
    cache = DynamicCache(config=lm.model.config)
    runs = {True: dict(seq=list(ids), feed=list(ids), new=[], sec=[], fed=[], mem=[]),
            False: dict(seq=list(ids), feed=list(ids), new=[], sec=[], fed=[], mem=[])}
    with model_work():
        # Warm-up, untimed, of both paths: the first calls in a process pay one-off costs (lazy imports, allocations).
        lm.model(torch.tensor([list(ids)]), use_cache=False)
        warm = DynamicCache(config=lm.model.config)
        lm.model(torch.tensor([list(ids)]), past_key_values=warm, use_cache=True)
        lm.model(torch.tensor([[ids[-1]]]), past_key_values=warm, use_cache=True)
        del warm
    began = time.perf_counter()
    for step in range(steps):
        out_of_time = time_budget_s is not None and time.perf_counter() - began > time_budget_s
        if (step >= 4 and out_of_time) or (should_stop is not None and should_stop()):
            break
        with model_work():
            for use_cache in (True, False):
                run = runs[use_cache]
                started = time.perf_counter()
                out = lm.model(torch.tensor([run["feed"]]), past_key_values=cache if use_cache else None,
                               use_cache=use_cache)
                next_id = int(torch.argmax(out.logits[0, -1]))
                run["sec"].append(time.perf_counter() - started)
                run["fed"].append(len(run["feed"]))
                run["mem"].append(cache_tensor_bytes(cache) if use_cache else 0)
                run["new"].append(next_id)
                run["seq"].append(next_id)
                run["feed"] = [next_id] if use_cache else list(run["seq"])
        if on_step:
            on_step(step + 1, steps, runs[True]["sec"][-1], runs[False]["sec"][-1])

    def finished(use_cache: bool) -> TimedRun:
        r = runs[use_cache]
        return TimedRun(use_cache, r["new"], r["sec"], r["fed"], r["mem"])

    cached = finished(True)
    return CacheComparison(prompt_ids=list(ids), cached=cached, uncached=finished(False),
                           new_text=decode(lm, cached.new_ids), measured_at=time.time(), requested=steps)


GB = 1e9


def calculator_rows(specs: list[ModelSpec], bytes_per_value: float, context: int, batch: int) -> list[dict]:
    """One row per configuration: its attention kind, bytes per token, the cache at this context and batch, and
    the cache against the weights at the same precision ("—" where the config is too partial to count them)."""
    rows = []
    for s in specs:
        cache = kv_cache_bytes(s, bytes_per_value, context, batch)
        weights = weight_bytes(s, bytes_per_value)
        rows.append({"model": s.name, "attention": f"{s.attention}: {s.heads} q / {s.kv_heads} kv heads",
                     "shape": f"{s.layers} × {s.kv_heads} × {s.head_dim}",
                     "bytes_per_token": kv_bytes_per_token(s, bytes_per_value), "kv_cache_gb": cache / GB,
                     "weights_gb": "—" if weights is None else f"{weights / GB:,.2f}",
                     "cache_vs_weights": "—" if not weights else f"{cache / weights:.2g}×"})
    return rows
