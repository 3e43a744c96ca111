"""QLoRA's storage of the frozen base model: 4-bit NormalFloat (NF4) in blocks, double quantization of the block
constants, and what fine-tuning costs in memory with and without it.

NF4 (Dettmers et al. 2023, "QLoRA") is a 4-bit code whose 16 levels sit at quantiles of a standard normal,
normalised to [-1, 1]. Each block of consecutive weights (64 by default) is divided by its largest |w| (its
absmax constant), rounded to the nearest level, and multiplied back. Pretrained weights are roughly normal, so
levels placed where a normal puts its mass waste fewer codes than evenly spaced ones; on weights that are not
normal the advantage can shrink or reverse, which is why the page measures it on real matrices.

The quantizers here are "fake": they return de-quantized float32 tensors of the original shape, so the traced
forward can run the model as a 4-bit model would compute (`BlockQuantizer` is its `weight_transform`) without a
second copy of the weights. Blocks run over the flattened matrix, as in bitsandbytes.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from engine.serving.compression import is_block_linear, quantize

# QLoRA's offset: the outermost quantiles are taken at 1 - delta, delta = (1/32 + 1/30) / 2, so that the
# two ends (+1 and -1 after normalising) are finite; 32 and 30 are twice the 16 and 15 levels of each half.
NF4_OFFSET = 1 - 0.5 * (1 / 32 + 1 / 30)
SECOND_BLOCK = 256          # double quantization: one float32 constant per 256 first-level constants
SCHEMES = ("nf4", "int4", "int8")
BYTES_PER_TRAINED_PARAM = 16   # mixed-precision Adam: bf16 weight 2 + bf16 gradient 2 + fp32 master 4 + fp32 m and v 8
BYTES_PER_FROZEN_PARAM = 2     # bf16


def normal_quantile(p: torch.Tensor) -> torch.Tensor:
    """The inverse CDF of N(0, 1): sqrt(2) * erfinv(2p - 1)."""
    return math.sqrt(2.0) * torch.erfinv(2 * p - 1)


@functools.lru_cache(maxsize=1)
def _nf4_levels() -> np.ndarray:
    """The 16 NF4 levels, built as the paper does: 8 positive quantiles of N(0, 1) on [0.5, offset], 7 negative
    ones, and an exact zero; the asymmetry buys a zero without wasting a code. Divided by the largest, so the
    ends are -1 and 1. Matches bitsandbytes' `create_normal_map` (and its hard-coded table) to about 1e-7."""
    positive = normal_quantile(torch.linspace(NF4_OFFSET, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -normal_quantile(torch.linspace(NF4_OFFSET, 0.5, 8, dtype=torch.float64)[:-1])
    levels = torch.cat([positive, negative, torch.zeros(1, dtype=torch.float64)]).sort().values
    normalised = (levels / levels.max()).numpy()
    normalised.flags.writeable = False
    return normalised


def nf4_levels() -> np.ndarray:
    """The 16 NF4 levels (see `_nf4_levels`), shared and read-only."""
    return _nf4_levels()


def uniform_levels(bits: int) -> np.ndarray:
    """Symmetric absmax integer levels normalised to [-1, 1]: k / (2^(b-1) - 1) for |k| <= 2^(b-1) - 1.
    For 4 bits that is 15 levels: the 16th code (-8) is left unused to keep zero exact and the grid symmetric."""
    top = 2 ** (bits - 1) - 1
    return np.arange(-top, top + 1, dtype=np.float64) / top


def blocks_of(weight: torch.Tensor, block: int) -> torch.Tensor:
    """The flattened weight as rows of `block` consecutive values (bitsandbytes' layout)."""
    if weight.numel() % block:
        raise ValueError(f"block size {block} does not divide the {weight.numel():,} weights")
    return weight.detach().reshape(-1, block).float()


def absmax_constants(weight: torch.Tensor, block: int) -> torch.Tensor:
    return blocks_of(weight, block).abs().amax(dim=1).clamp(min=1e-12)


def double_quantize(constants: torch.Tensor, second_block: int = SECOND_BLOCK) -> torch.Tensor:
    """The block constants as double quantization stores them, de-quantized: their mean is subtracted (they are
    all positive; centring lets a symmetric code use its negative half), then each run of `second_block`
    constants is rounded to 8-bit absmax integers with one float32 constant of its own. QLoRA uses an 8-bit
    float code for this step; 8-bit integers here take the same storage, and the error they add is measured."""
    mean = constants.mean()
    centred = constants - mean
    pad = (-centred.numel()) % second_block
    padded = torch.cat([centred, centred.new_zeros(pad)]).reshape(-1, second_block)
    return (quantize(padded, 8, "channel", "absmax").reshape(-1)[:constants.numel()] + mean).clamp(min=1e-12)


LOOKUP_BINS = 1 << 14


@functools.lru_cache(maxsize=4)
def _level_lookup(levels: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of LOOKUP_BINS equal bins of [-1, 1]: the nearest level at its left edge, the next level, and
    the midpoint between them if it falls inside the bin (else +inf). A bin (width 1.2e-4) is far narrower
    than the gap between two midpoints, so one comparison finishes the rounding exactly."""
    grid = torch.tensor(levels, dtype=torch.float32)
    midpoints = (grid[1:] + grid[:-1]) / 2
    left = torch.linspace(-1, 1, LOOKUP_BINS + 1, dtype=torch.float64)[:-1].float()
    lower = torch.bucketize(left, midpoints)
    threshold = torch.cat([midpoints, torch.tensor([math.inf])])[lower]
    return threshold, grid[lower], grid[(lower + 1).clamp(max=len(levels) - 1)]


def nearest_level(normalised: torch.Tensor, levels: np.ndarray) -> torch.Tensor:
    """Each value in [-1, 1] replaced by the closest of the sorted `levels` (a value exactly on a midpoint
    goes to the lower level, as `torch.bucketize` does). Same result as bucketizing against the midpoints,
    about 3x faster on the CPU, which matters when all 210 matrices are quantized for every pass."""
    threshold, lower, upper = _level_lookup(tuple(float(v) for v in levels))
    flat = normalised.reshape(-1)
    bins = ((flat + 1) * (LOOKUP_BINS / 2)).floor_().clamp_(0, LOOKUP_BINS - 1).to(torch.int32)
    return torch.where(flat > threshold.index_select(0, bins), upper.index_select(0, bins),
                       lower.index_select(0, bins)).reshape(normalised.shape)


def quantize_nf4(weight: torch.Tensor, block: int = 64, double_quant: bool = False) -> torch.Tensor:
    """NF4 round trip: codes chosen with the exact block constants, de-quantized with the stored ones (8-bit
    ones with double quantization, as bitsandbytes does)."""
    rows = blocks_of(weight, block)
    constants = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    codes = nearest_level(rows / constants, nf4_levels())
    stored = double_quantize(constants.reshape(-1)).reshape(-1, 1) if double_quant else constants
    return (codes * stored).reshape(weight.shape)


def quantize_uniform(weight: torch.Tensor, bits: int, block: int = 64) -> torch.Tensor:
    """Symmetric absmax integers, one constant per block of the flattened matrix (the quantization page's
    `quantize`, applied to the same blocks as NF4 so the two compare like for like)."""
    return quantize(blocks_of(weight, block), bits, "channel", "absmax").reshape(weight.shape)


def quantize_scheme(weight: torch.Tensor, scheme: str, block: int, double_quant: bool = False) -> torch.Tensor:
    if scheme == "nf4":
        return quantize_nf4(weight, block, double_quant)
    if scheme in ("int4", "int8"):
        return quantize_uniform(weight, int(scheme[3:]), block)
    raise ValueError(f"unknown scheme {scheme!r}")


@dataclass(frozen=True)
class BlockQuantizer:
    """The traced forward's weight_transform: every block linear (attention and FFN projections of all 30
    blocks) is replaced by its de-quantized `scheme` version; the tied embedding / lm_head stays float32, as
    QLoRA (through bitsandbytes) leaves embeddings and the output layer in 16-bit."""
    scheme: str
    block: int = 64
    double_quant: bool = False

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        if not is_block_linear(name):
            return weight
        return quantize_scheme(weight, self.scheme, self.block, self.double_quant)


@dataclass(frozen=True)
class ReconstructionError:
    mse: float
    mean_abs: float
    relative: float        # ||W - Q(W)||_F / ||W||_F


def reconstruction_error(weight: torch.Tensor, restored: torch.Tensor) -> ReconstructionError:
    w = weight.detach().float()
    diff = restored - w
    return ReconstructionError(mse=float(diff.pow(2).mean()), mean_abs=float(diff.abs().mean()),
                               relative=float(diff.norm() / w.norm().clamp(min=1e-12)))


VARIANTS = ("NF4", "NF4 + double quant.", "INT4", "INT8")


def matrix_errors(weight: torch.Tensor, block: int) -> dict[str, ReconstructionError]:
    """The error of each variant on one matrix, by the names in `VARIANTS`."""
    return {"NF4": reconstruction_error(weight, quantize_nf4(weight, block)),
            "NF4 + double quant.": reconstruction_error(weight, quantize_nf4(weight, block, True)),
            "INT4": reconstruction_error(weight, quantize_uniform(weight, 4, block)),
            "INT8": reconstruction_error(weight, quantize_uniform(weight, 8, block))}


def normalised_weights(weight: torch.Tensor, block: int) -> np.ndarray:
    """Every weight divided by its block's absmax: the values in [-1, 1] that the 16 levels must cover."""
    rows = blocks_of(weight, block)
    return (rows / rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)).reshape(-1).numpy()


def excess_kurtosis(weight: torch.Tensor) -> float:
    """0 for a normal distribution; positive for heavier tails (more outliers) than a normal with the same spread."""
    w = weight.detach().double().reshape(-1)
    z = (w - w.mean()) / w.std()
    return float(z.pow(4).mean() - 3)


@dataclass(frozen=True)
class StorageBits:
    """Bits per parameter of one matrix in NF4, from the counts of its own layout."""
    weights: int
    blocks: int
    second_blocks: int
    plain: float            # 4 + one float32 constant per block
    double: float           # 4 + one 8-bit constant per block + one float32 per 256 of them + one float32 mean

    @property
    def saved(self) -> float:
        return self.plain - self.double


def storage_bits(weights: int, block: int = 64, second_block: int = SECOND_BLOCK) -> StorageBits:
    blocks = math.ceil(weights / block)
    second = math.ceil(blocks / second_block)
    plain = (4 * weights + 32 * blocks) / weights
    double = (4 * weights + 8 * blocks + 32 * second + 32) / weights
    return StorageBits(weights, blocks, second, plain, double)


# ----- memory to fine-tune -------------------------------------------------------------------------------------

LINEAR_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LlamaShape:
    """What the memory of a LLaMA-style decoder depends on."""
    name: str
    layers: int
    d_model: int
    kv_dim: int             # output width of k_proj and v_proj (kv heads x head size)
    ffn_dim: int
    vocab: int
    tied: bool

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(out, in) of each linear in one block."""
        d, kv, f = self.d_model, self.kv_dim, self.ffn_dim
        return {"q_proj": (d, d), "k_proj": (kv, d), "v_proj": (kv, d), "o_proj": (d, d),
                "gate_proj": (f, d), "up_proj": (f, d), "down_proj": (d, f)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(o * i for o, i in self.linear_shapes().values())

    @property
    def other_params(self) -> int:
        """Embedding (and an untied lm_head) plus two RMSNorm gains per block and the final one."""
        return self.vocab * self.d_model * (1 if self.tied else 2) + (2 * self.layers + 1) * self.d_model

    @property
    def parameters(self) -> int:
        return self.linear_params + self.other_params

    def adapter_params(self, rank: int, targets: tuple[str, ...]) -> int:
        """LoRA's A (r x in) and B (out x r) on each target linear of every block."""
        shapes = self.linear_shapes()
        return self.layers * sum(rank * (shapes[t][0] + shapes[t][1]) for t in targets)


def shape_of(model) -> LlamaShape:
    """SmolLM2's shape read from its loaded config."""
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return LlamaShape("SmolLM2-135M", cfg.num_hidden_layers, cfg.hidden_size, cfg.num_key_value_heads * head_dim,
                      cfg.intermediate_size, cfg.vocab_size, bool(getattr(cfg, "tie_word_embeddings", False)))


# LLaMA-1 shapes (Touvron et al. 2023, table 2): the 65B model is the one QLoRA fine-tuned on one 48 GB GPU.
LLAMA_1 = (LlamaShape("LLaMA-7B", 32, 4096, 4096, 11008, 32000, False),
           LlamaShape("LLaMA-13B", 40, 5120, 5120, 13824, 32000, False),
           LlamaShape("LLaMA-33B", 60, 6656, 6656, 17920, 32000, False),
           LlamaShape("LLaMA-65B", 80, 8192, 8192, 22016, 32000, False))


@dataclass(frozen=True)
class FinetuneMemory:
    name: str
    parameters: int
    adapter_params: int
    full: float             # bytes
    lora: float
    qlora: float


def finetune_memory(shape: LlamaShape, rank: int, targets: tuple[str, ...], block: int = 64,
                    double_quant: bool = True, parameters: int | None = None) -> FinetuneMemory:
    """Weights, gradients and optimizer states (activations left out: they depend on batch and sequence).

    Full fine-tuning trains every parameter at 16 bytes (mixed-precision Adam). LoRA freezes the base in bf16
    (2 bytes) and trains the adapters at 16 bytes. QLoRA stores the block linears in NF4 (4 bits plus the block
    constants), keeps embeddings and norms in bf16, and trains the adapters at 16 bytes. `parameters` (the count
    read from a loaded model) replaces the shape's formula when given."""
    total = shape.parameters if parameters is None else parameters
    adapters = shape.adapter_params(rank, targets)
    bits = storage_bits(10**9, block)
    nf4_bits = bits.double if double_quant else bits.plain
    linear = shape.linear_params
    return FinetuneMemory(
        name=shape.name, parameters=total, adapter_params=adapters,
        full=float(total * BYTES_PER_TRAINED_PARAM),
        lora=float(total * BYTES_PER_FROZEN_PARAM + adapters * BYTES_PER_TRAINED_PARAM),
        qlora=float(linear * nf4_bits / 8 + (total - linear) * BYTES_PER_FROZEN_PARAM
                    + adapters * BYTES_PER_TRAINED_PARAM))


# ----- measurements on the live model -------------------------------------------------------------------------

PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj")


def block_linear_names(layers: int) -> list[str]:
    """The traced forward's names of every block linear, layer by layer."""
    return [f"layers.{i}.{p}" for i in range(layers) for p in PROJECTIONS]


@dataclass(frozen=True)
class MatrixScore:
    name: str
    nf4_mse: float
    int4_mse: float
    kurtosis: float

    @property
    def ratio(self) -> float:
        """NF4's error as a share of INT4's: below 1, NF4 wins."""
        return self.nf4_mse / max(self.int4_mse, 1e-30)


def scan_matrices(lm, block: int, on_step=lambda done, total: None, should_stop=lambda: False) -> list[MatrixScore]:
    """NF4 against INT4 (same blocks) on every block linear of the model, with progress and a stop."""
    from engine.runtime.gate import model_work
    from engine.serving.compression import linear_weight

    names = block_linear_names(lm.card.layers)
    scores = []
    for i, name in enumerate(names):
        if should_stop():
            break
        with model_work():
            weight = linear_weight(lm, name)
            scores.append(MatrixScore(name, reconstruction_error(weight, quantize_nf4(weight, block)).mse,
                                      reconstruction_error(weight, quantize_uniform(weight, 4, block)).mse,
                                      excess_kurtosis(weight)))
        on_step(i + 1, len(names))
    return scores


MODEL_VARIANTS = ("NF4", "INT4", "INT8")


def compare_models(lm, ids: list[int], block: int, double_quant: bool, on_step=lambda done, total: None,
                   should_stop=lambda: False) -> dict:
    """Perplexity, KL to float32 and top-1 agreement (`engine.serving.compression.Damage`) on `ids` with every
    block linear in NF4 (with or without double quantization), INT4 and INT8, same block size."""
    from engine.serving.compression import damage

    results = {}
    for i, variant in enumerate(MODEL_VARIANTS):
        if should_stop():
            break
        scheme = variant.lower()
        results[variant] = damage(lm, ids, BlockQuantizer(scheme, block, double_quant and scheme == "nf4"))
        on_step(i + 1, len(MODEL_VARIANTS))
    return results


def kurtosis_rank_correlation(scores: list[MatrixScore]) -> float:
    """Spearman's rank correlation between the matrices' excess kurtosis and NF4's error ratio to INT4: negative
    when heavier-tailed matrices gain more from NF4."""
    if len(scores) < 3:
        return float("nan")
    ranks = lambda v: np.argsort(np.argsort(np.asarray(v)))
    return float(np.corrcoef(ranks([s.kurtosis for s in scores]), ranks([s.ratio for s in scores]))[0, 1])
