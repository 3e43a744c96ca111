"""Rotary position embedding (RoPE) as SmolLM2 computes it, taken apart.

RoPE splits each 64-number query and key into 32 two-number pairs and turns pair i of the token at position m
by the angle m * theta_i, with theta_i = base^(-2i/64) (the base is the config's rope_theta). The score of a
query at m with a key at n is then a sum over pairs of |q_i| |k_i| cos(angle between them + (m - n) theta_i):
it depends on the distance m - n only, never on m or n themselves.

SmolLM2 stores its checkpoints in the rotate-half layout: pair i is dimensions (i, i + 32), not (2i, 2i + 1).
Every function here follows that layout, as `engine.model.traced` does, so the pairs are the ones the model turns.
The frequencies come from the model's own rotary module (its `inv_freq` buffer), never from a typed constant.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel


@dataclass(frozen=True, eq=False)
class RopeFrequencies:
    """The rotation speeds of the live model's RoPE."""
    theta: float               # the base, from the config (rope_theta)
    rope_type: str             # "default" for SmolLM2: no scaling
    head_dim: int
    inv_freq: np.ndarray       # [head_dim / 2] radians per position, read from the rotary module (read-only)
    attention_scaling: float   # a factor some scaled RoPE variants put on cos and sin; 1.0 here
    formula_gap: float         # max |inv_freq - theta^(-2i/head_dim)|: the buffer matches the config's base

    @property
    def pairs(self) -> int:
        return self.inv_freq.size

    @property
    def wavelengths(self) -> np.ndarray:
        """Tokens per full turn of each pair: 2 pi / theta_i."""
        return 2 * np.pi / self.inv_freq


def rope_frequencies(lm: LiveModel) -> RopeFrequencies:
    rotary = lm.model.model.rotary_emb
    inv_freq = rotary.inv_freq.detach().numpy().astype(np.float64)
    inv_freq.flags.writeable = False
    theta, dim = lm.card.rope_theta, 2 * inv_freq.size
    formula = theta ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    return RopeFrequencies(theta=theta, rope_type=str(rotary.rope_type), head_dim=dim, inv_freq=inv_freq,
                           attention_scaling=float(rotary.attention_scaling),
                           formula_gap=float(np.abs(inv_freq - formula).max()))


def rotation_tables(lm: LiveModel, positions: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [positions, pairs] of each pair's angle at positions start..start+positions-1, as the model's
    own rotary module returns them (float32, the numbers the traced pass multiplies q and k by)."""
    rotary = lm.model.model.rotary_emb
    with model_work():
        cos, sin = rotary(torch.empty(0), torch.arange(start, start + positions)[None])
    half = cos.shape[-1] // 2      # rotate-half layout: the second half repeats the first
    return cos[0, :, :half].numpy().copy(), sin[0, :, :half].numpy().copy()


def as_pairs(x: np.ndarray) -> np.ndarray:
    """[..., head_dim] -> [..., pairs, 2]: pair i is (x[i], x[i + head_dim/2])."""
    half = x.shape[-1] // 2
    return np.stack([x[..., :half], x[..., half:]], axis=-1)


def rotate_pairs(pairs: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Turn each (a, b) pair counter-clockwise by its angle: (a cos - b sin, a sin + b cos)."""
    a, b = pairs[..., 0], pairs[..., 1]
    c, s = np.cos(angles), np.sin(angles)
    return np.stack([a * c - b * s, a * s + b * c], axis=-1)


def pair_contributions(q_rot: np.ndarray, k_rot: np.ndarray) -> np.ndarray:
    """[pairs] each pair's part of the raw score q . k (the dot product of two rotated head vectors)."""
    return (as_pairs(q_rot) * as_pairs(k_rot)).sum(-1)


def score_by_distance(q: np.ndarray, k: np.ndarray, inv_freq: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Raw q . k (before the 1/sqrt(d) scale) of two fixed pre-rotation vectors when the query sits `distance`
    tokens after the key, for each distance, in float64.

    Per pair, R(m theta) q . R(n theta) k = (q_a k_a + q_b k_b) cos(D theta) + (q_a k_b - q_b k_a) sin(D theta)
    with D = m - n: only the distance appears.
    """
    qp, kp = as_pairs(np.asarray(q, np.float64)), as_pairs(np.asarray(k, np.float64))
    along = qp[:, 0] * kp[:, 0] + qp[:, 1] * kp[:, 1]
    across = qp[:, 0] * kp[:, 1] - qp[:, 1] * kp[:, 0]
    angles = np.asarray(distances, np.float64)[:, None] * np.asarray(inv_freq, np.float64)[None]
    return (along * np.cos(angles) + across * np.sin(angles)).sum(-1)

