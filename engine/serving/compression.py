"""Quantization and pruning applied to SmolLM2 inside the traced forward, and what they cost the model.

Each compression is a small frozen dataclass that is also the traced forward's `weight_transform`: called with
a linear layer's name and its shared weight, it returns a new, compressed tensor for that one call, so no second
copy of the model is ever held and equal settings compare (and cache) equal. The attention and FFN projections
of every block are compressed; the tied embedding / lm_head matrix is left in float32, as llama.cpp's usual
quantization types keep the output layer at higher precision.

What a compression costs is measured against the float32 model on the same text: perplexity, the mean KL
divergence of the next-token distributions, and the share of positions whose top-1 token is unchanged.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from engine.model.live_model import LiveModel
from engine.model.perplexity import scores_from_logits
from engine.model.traced import Interventions, trace

GRANULARITIES = ("tensor", "channel", "group")
SCHEMES = ("absmax", "zeropoint")
PRUNING_METHODS = ("magnitude", "wanda")
PATTERNS = ("unstructured", "2:4")


def is_block_linear(name: str) -> bool:
    return name.startswith("layers.")


def quantize(weight: torch.Tensor, bits: int, granularity: str = "channel", scheme: str = "absmax",
             group_size: int = 64) -> torch.Tensor:
    """Round `weight` [out, in] to `bits`-bit integers and back (fake quantization), one scale per tensor, per
    output channel (row) or per group of `group_size` consecutive inputs in a row.

    absmax (symmetric): scale = max|w| / (2^(b-1) - 1), integers in [-(2^(b-1) - 1), 2^(b-1) - 1], zero exact.
    zeropoint (asymmetric): scale = (max - min) / (2^b - 1) and an integer offset, so all 2^b levels cover
    [min, max] even when the weights are not centred on zero."""
    out_features, in_features = weight.shape
    if granularity == "tensor":
        blocks = weight.reshape(1, -1)
    elif granularity == "channel":
        blocks = weight
    elif granularity == "group":
        if in_features % group_size:
            raise ValueError(f"group size {group_size} does not divide {in_features} inputs")
        blocks = weight.reshape(-1, group_size)
    else:
        raise ValueError(f"unknown granularity {granularity!r}")
    if scheme == "absmax":
        top = 2 ** (bits - 1) - 1
        scale = blocks.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / top
        restored = torch.clamp(torch.round(blocks / scale), -top, top) * scale
    elif scheme == "zeropoint":
        low, high = blocks.amin(dim=1, keepdim=True), blocks.amax(dim=1, keepdim=True)
        scale = ((high - low) / (2 ** bits - 1)).clamp(min=1e-12)
        zero = torch.round(-low / scale)
        restored = (torch.clamp(torch.round(blocks / scale) + zero, 0, 2 ** bits - 1) - zero) * scale
    else:
        raise ValueError(f"unknown scheme {scheme!r}")
    return restored.reshape(out_features, in_features)


def bits_per_weight(bits: int, granularity: str, scheme: str, group_size: int) -> float:
    """Storage per weight including the scales (and offsets): a float16 scale per group adds 16/group bits."""
    if granularity != "group":
        return float(bits)   # one scale per row of 576 or 1,536 weights, or per tensor: negligible
    extra = 16 + (16 if scheme == "zeropoint" else 0)
    return bits + extra / group_size


@dataclass(frozen=True)
class Quantizer:
    bits: int
    granularity: str = "channel"
    scheme: str = "absmax"
    group_size: int = 64

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        if not is_block_linear(name):
            return weight
        return quantize(weight, self.bits, self.granularity, self.scheme, self.group_size)


def prune_mask(importance: torch.Tensor, sparsity: float, pattern: str = "unstructured") -> torch.Tensor:
    """Boolean keep-mask [out, in]: per output row, drop the `sparsity` share of least important weights
    (Wanda compares weights within a row), or in 2:4, keep the 2 most important of every 4 consecutive inputs."""
    out_features, in_features = importance.shape
    if pattern == "2:4":
        groups = importance.reshape(out_features, in_features // 4, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool)
        keep.scatter_(2, groups.topk(2, dim=2).indices, True)
        return keep.reshape(out_features, in_features)
    if pattern != "unstructured":
        raise ValueError(f"unknown pattern {pattern!r}")
    drop = int(round(sparsity * in_features))
    keep = torch.ones_like(importance, dtype=torch.bool)
    if drop > 0:
        keep.scatter_(1, importance.topk(drop, dim=1, largest=False).indices, False)
    return keep


# The input each linear reads, by the traced forward's names: o_proj reads the heads' outputs side by side.
_INPUT_OF = {"q_proj": "attn_norm_out", "k_proj": "attn_norm_out", "v_proj": "attn_norm_out",
             "o_proj": "head_out", "gate_proj": "ffn_norm_out", "up_proj": "ffn_norm_out", "down_proj": "product"}
_norms_lock = threading.Lock()
_norms_by_text: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}


def input_norms(lm: LiveModel, calibration_ids: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """||X_j||_2 of every input feature j of every block linear over the calibration text (Wanda's statistic),
    by the linear's name; computed once per calibration text (a few are kept)."""
    with _norms_lock:
        if calibration_ids in _norms_by_text:
            return _norms_by_text[calibration_ids]
    tp = trace(lm, list(calibration_ids), record=set(_INPUT_OF.values()))
    norms = {}
    for layer in tp.layers:
        for linear, source in _INPUT_OF.items():
            x = torch.from_numpy(np.array(tp.at(source, layer)))
            if source == "head_out":                     # [heads, T, head_dim] -> [T, heads * head_dim]
                x = x.permute(1, 0, 2).reshape(x.shape[1], -1)
            part = "self_attn" if linear in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            norms[f"layers.{layer}.{part}.{linear}"] = x.norm(dim=0)
    with _norms_lock:
        while len(_norms_by_text) >= 4:
            _norms_by_text.pop(next(iter(_norms_by_text)))
        _norms_by_text[calibration_ids] = norms
    return norms


@dataclass(frozen=True)
class Pruner:
    sparsity: float
    method: str = "magnitude"
    pattern: str = "unstructured"
    calibration_ids: tuple[int, ...] = ()     # Wanda's calibration text (its norms: `wanda_pruner`)

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        if not is_block_linear(name) or (self.pattern == "unstructured" and self.sparsity <= 0):
            return weight
        importance = weight.abs()
        if self.method == "wanda":
            with _norms_lock:
                norms = _norms_by_text.get(self.calibration_ids)
            if norms is None:
                raise RuntimeError("Wanda's input norms are not ready: build the pruner with wanda_pruner()")
            importance = importance * norms[name][None, :]
        return weight * prune_mask(importance, self.sparsity, self.pattern)


def make_pruner(lm: LiveModel, sparsity: float, method: str, pattern: str, calibration_ids: tuple[int, ...]) -> Pruner:
    """A pruner ready to run: for Wanda, the calibration text's input norms are computed first."""
    if method not in PRUNING_METHODS:
        raise ValueError(f"unknown pruning method {method!r}")
    if method == "wanda":
        input_norms(lm, calibration_ids)
        return Pruner(sparsity, method, pattern, tuple(calibration_ids))
    return Pruner(sparsity, method, pattern)


@dataclass(frozen=True, eq=False)
class Damage:
    """A compressed model against float32 on one text."""
    perplexity: float
    base_perplexity: float
    mean_kl: float            # nats: KL(float32 || compressed) of the next-token distributions, averaged
    top1_agreement: float     # share of positions whose most likely next token is unchanged


_base_lock = threading.Lock()
_base_logits: dict[tuple[int, ...], np.ndarray] = {}


def _float_logits(lm: LiveModel, ids: tuple[int, ...]) -> np.ndarray:
    with _base_lock:
        if ids in _base_logits:
            return _base_logits[ids]
    logits = trace(lm, list(ids)).logits
    with _base_lock:
        while len(_base_logits) >= 8:
            _base_logits.pop(next(iter(_base_logits)))
        _base_logits[ids] = logits
    return logits


def damage(lm: LiveModel, ids: list[int], transform) -> Damage:
    """Perplexity, KL to float32 and top-1 agreement of the model with `transform` applied, on `ids`."""
    key = tuple(int(i) for i in ids)
    base = torch.from_numpy(np.array(_float_logits(lm, key)))
    changed = torch.from_numpy(np.array(trace(lm, list(key), interventions=Interventions(weight_transform=transform)).logits))
    base_lp, changed_lp = torch.log_softmax(base, -1), torch.log_softmax(changed, -1)
    kl = (base_lp.exp() * (base_lp - changed_lp)).sum(-1)
    nll_base, _ = scores_from_logits(key, base.numpy())
    nll, _ = scores_from_logits(key, changed.numpy())
    return Damage(perplexity=float(np.exp(nll.mean())), base_perplexity=float(np.exp(nll_base.mean())),
                  mean_kl=float(kl.mean()), top1_agreement=float((base.argmax(-1) == changed.argmax(-1)).float().mean()))


def block_linear_weights(lm: LiveModel) -> int:
    """How many weights the compressions touch: every block's attention and FFN projections."""
    return sum(p.numel() for name, p in lm.model.model.layers.named_parameters() if p.dim() == 2)


@dataclass(frozen=True, eq=False)
class SweepPoint:
    setting: float            # bits, or sparsity
    damage: Damage


def sweep(lm: LiveModel, ids: list[int], transforms: list[tuple[float, object]], on_step=lambda d, t: None,
          should_stop=lambda: False) -> list[SweepPoint]:
    """The damage of each (setting, transform) in turn: one traced pass each, with progress and a stop."""
    points = []
    for i, (setting, transform) in enumerate(transforms):
        if should_stop():
            break
        points.append(SweepPoint(setting, damage(lm, ids, transform)))
        on_step(i + 1, len(transforms))
    return points


def linear_weight(lm: LiveModel, name: str) -> torch.Tensor:
    """The shared weight of one block linear by its traced-forward name, e.g. "layers.3.mlp.down_proj"."""
    module = lm.model.model
    for part in name.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module.weight


def survival_map(lm: LiveModel, name: str, sparsity: float, pattern: str, calibration_ids: tuple[int, ...],
                 rows: int = 48, cols: int = 96) -> np.ndarray:
    """Which weights of the top-left corner of one matrix survive: 0 pruned by both methods, 1 kept by
    magnitude only, 2 kept by Wanda only, 3 kept by both. The masks are computed on whole rows, as pruning does."""
    weight = linear_weight(lm, name)[:rows]
    magnitude = make_pruner(lm, sparsity, "magnitude", pattern, ())(name, weight) != 0
    wanda = make_pruner(lm, sparsity, "wanda", pattern, calibration_ids)(name, weight) != 0
    return (magnitude.int() + 2 * wanda.int())[:, :cols].numpy()
