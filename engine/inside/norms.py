"""RMSNorm in SmolLM2, measured on a real pass: how big the residual stream is before and after every norm,
the learned gains, the massive activations, and one vector normalized by hand (and by LayerNorm's recipe).

Indices are 0-based (layers 0..29, positions 0..T-1, channels 0..575); pages show them 1-based.

Every LLaMA block normalizes twice, before attention ("input_layernorm") and before the FFN
("post_attention_layernorm"), and the model normalizes once more before the LM head:

    RMSNorm(x) = g * x / sqrt(mean(x^2) + eps)      (no mean subtraction, no bias)
    LayerNorm(x) = g * (x - mean(x)) / sqrt(var(x) + eps) + b

The by-hand numbers are computed here in numpy float64 from the traced pass's own "resid_in", so that their
agreement with the pass's "attn_norm_out" is a real check of the formula, not of one code path against itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.model.live_model import LiveModel
from engine.model.traced import trace

NORM_NAMES = ("resid_in", "attn_norm_out", "resid_mid", "ffn_norm_out", "resid_out")
MASSIVE_RATIO = 100.0   # a channel this many times the vector's median |value| counts as a massive activation


def rms(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Root mean square along `axis`: sqrt(mean(x^2)), the size RMSNorm divides by (before eps)."""
    return np.sqrt(np.mean(np.square(x, dtype=np.float64), axis=axis))


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class NormProfile:
    """The residual stream's size at every norm of one pass. Arrays are read-only."""
    ids: tuple[int, ...]
    eps: float
    rms_in_attn: np.ndarray      # [layers, T] RMS of the stream entering each block (the attention norm's input)
    rms_out_attn: np.ndarray     # [layers, T] RMS of the attention norm's output
    rms_in_ffn: np.ndarray       # [layers, T] RMS of the stream halfway through each block (the FFN norm's input)
    rms_out_ffn: np.ndarray      # [layers, T]
    rms_in_final: np.ndarray     # [T] the stream leaving the last block
    rms_out_final: np.ndarray    # [T] after the final norm
    peak_ratio: np.ndarray       # [layers, T] max |x_i| / median |x_i| of the stream entering each block
    peak_channel: np.ndarray     # [layers, T] the channel of that maximum
    peak_value: np.ndarray       # [layers, T] its signed value
    resid_in: np.ndarray         # [layers, T, d_model] the attention norm's inputs
    attn_norm_out: np.ndarray    # [layers, T, d_model] and its outputs, as the model computed them

    @property
    def layers(self) -> int:
        return self.rms_in_attn.shape[0]

    @property
    def length(self) -> int:
        return len(self.ids)


def norm_profile(lm: LiveModel, ids: list[int]) -> NormProfile:
    """One traced pass over `ids`, reduced to the sizes around every norm (and the attention norms' vectors)."""
    tp = trace(lm, list(ids), record=set(NORM_NAMES) | {"final_norm"})
    stream_in = tp["resid_in"]
    magnitude = np.abs(stream_in)
    peak_channel = magnitude.argmax(-1)
    peak = np.take_along_axis(magnitude, peak_channel[..., None], -1)[..., 0]
    median = np.median(magnitude, axis=-1)
    signed = np.take_along_axis(stream_in, peak_channel[..., None], -1)[..., 0]
    arrays = dict(
        rms_in_attn=rms(stream_in), rms_out_attn=rms(tp["attn_norm_out"]),
        rms_in_ffn=rms(tp["resid_mid"]), rms_out_ffn=rms(tp["ffn_norm_out"]),
        rms_in_final=rms(tp["resid_out"][-1]), rms_out_final=rms(tp.final_norm),
        peak_ratio=peak / np.maximum(median, 1e-12), peak_channel=peak_channel, peak_value=signed.astype(np.float64))
    eps = float(lm.model.model.layers[0].input_layernorm.variance_epsilon)
    return NormProfile(ids=tuple(int(i) for i in ids), eps=eps,
                       **{k: _read_only(np.asarray(v)) for k, v in arrays.items()},
                       resid_in=stream_in, attn_norm_out=tp["attn_norm_out"])


def gains(lm: LiveModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The learned gain vectors g, copied out of the model: attention norms [layers, d], FFN norms [layers, d],
    final norm [d]."""
    model = lm.model.model
    attention = np.stack([b.input_layernorm.weight.detach().numpy() for b in model.layers]).astype(np.float64)
    ffn = np.stack([b.post_attention_layernorm.weight.detach().numpy() for b in model.layers]).astype(np.float64)
    final = model.norm.weight.detach().numpy().astype(np.float64)
    return _read_only(attention), _read_only(ffn), _read_only(final)


@dataclass(frozen=True, eq=False)
class NormByHand:
    """One residual vector normalized by hand, RMSNorm's way and LayerNorm's way, next to the model's output."""
    layer: int
    position: int
    eps: float
    x: np.ndarray                # [d] the vector entering the attention norm
    gain: np.ndarray             # [d] that norm's learned g
    model_output: np.ndarray     # [d] the model's own RMSNorm output (traced "attn_norm_out")
    mean_square: float           # mean(x^2)
    rms: float                   # sqrt(mean(x^2) + eps)
    rms_norm: np.ndarray         # [d] g * x / rms, by hand
    mean: float                  # LayerNorm's extra statistics
    variance: float
    layer_norm: np.ndarray       # [d] g * (x - mean) / sqrt(var + eps): LayerNorm with this gain and no bias

    @property
    def max_abs_difference(self) -> float:
        """By-hand RMSNorm against the model's output."""
        return float(np.max(np.abs(self.rms_norm - self.model_output)))

    @property
    def ln_vs_rms_cosine(self) -> float:
        """How closely the two normalizations point the same way (1 = identical direction)."""
        a, b = self.rms_norm, self.layer_norm
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    @property
    def ln_vs_rms_max_difference(self) -> float:
        return float(np.max(np.abs(self.layer_norm - self.rms_norm)))


def normalize_by_hand(profile: NormProfile, attention_gains: np.ndarray, layer: int, position: int) -> NormByHand:
    """Redo layer `layer`'s attention RMSNorm at `position` in float64, and LayerNorm on the same vector.

    mean(x^2) = mean(x)^2 + var(x), so RMSNorm and LayerNorm agree exactly when the vector's mean is 0;
    the further the mean is from 0 (relative to the RMS), the more they differ.
    """
    if not (0 <= layer < profile.layers and 0 <= position < profile.length):
        raise IndexError(f"layer {layer}, position {position} out of range ({profile.layers}, {profile.length})")
    x = profile.resid_in[layer, position].astype(np.float64)
    g = np.asarray(attention_gains[layer], dtype=np.float64)
    mean_square = float(np.mean(x * x))
    size = float(np.sqrt(mean_square + profile.eps))
    mean, variance = float(x.mean()), float(x.var())
    return NormByHand(layer=layer, position=position, eps=profile.eps, x=x, gain=g,
                      model_output=profile.attn_norm_out[layer, position].astype(np.float64),
                      mean_square=mean_square, rms=size, rms_norm=g * x / size, mean=mean, variance=variance,
                      layer_norm=g * (x - mean) / np.sqrt(variance + profile.eps))


@dataclass(frozen=True)
class MassiveActivation:
    """A channel of the stream entering some block that towers over the rest of its vector."""
    layer: int
    position: int
    channel: int
    value: float
    ratio: float       # |value| / median |x|


def massive_activations(profile: NormProfile, threshold: float = MASSIVE_RATIO) -> list[MassiveActivation]:
    """Every (layer, position) whose largest channel exceeds `threshold` times its median, largest ratio first."""
    layers, positions = np.nonzero(profile.peak_ratio >= threshold)
    found = [MassiveActivation(int(l), int(p), int(profile.peak_channel[l, p]), float(profile.peak_value[l, p]),
                               float(profile.peak_ratio[l, p])) for l, p in zip(layers, positions)]
    return sorted(found, key=lambda m: -m.ratio)
