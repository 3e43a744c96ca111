"""Dropout on the live SmolLM2 at inference, through the traced forward (the shared model is never touched).

Dropout zeroes each unit with probability p and scales the survivors by 1 / (1 - p), so every unit keeps its
expected value. Here it is applied where the traced pass lets a caller change activations without hooks: the
FFN's hidden product act(gate) * up (1,536 units per token in each of SmolLM2's 30 blocks), just before
down_proj reads it. GPT-2-style training would also drop attention weights and the residual branches; the
baby GPT (baby_gpt.py) drops all of those while it trains.

SmolLM2, like LLaMA, was pretrained without dropout (its config's attention_dropout is 0.0), so switching it on
here shows what dropout does to a pass, not a mode the model was trained with. A pass with p = 0 has no
transform at all and is the model's own pass; with p > 0 each pass draws its own masks from a per-pass seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.model.live_model import LiveModel
from engine.model.traced import Interventions, trace


@dataclass(frozen=True)
class FfnDropout:
    """An ffn_product_transform: inverted dropout with its own seed per (pass, layer). Hashable by value, so a
    pass's cache key says which masks it drew."""
    p: float
    seed: int

    def __call__(self, layer: int, product: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(self.seed) * 1000 + int(layer))
        keep = torch.rand(product.shape, generator=g) >= self.p
        return product * keep / (1.0 - self.p)


def dropout_interventions(p: float, seed: int) -> Interventions:
    if not 0 <= p < 1:
        raise ValueError("dropout p must be in [0, 1)")
    return Interventions(ffn_product_transform=FfnDropout(float(p), int(seed)) if p > 0 else None)


@dataclass(frozen=True, eq=False)
class DropoutSpread:
    """The next-token distribution of repeated passes over the same text."""
    p: float
    probs: np.ndarray        # [passes, vocab] softmax at the last position, one row per pass
    clean: np.ndarray        # [vocab] the model's own pass (no dropout)

    @property
    def passes(self) -> int:
        return len(self.probs)

    @property
    def top_choices(self) -> np.ndarray:
        """The most likely next token of each pass."""
        return self.probs.argmax(axis=1)

    @property
    def max_spread(self) -> float:
        """Largest difference between two passes in any token's probability (0 when all passes agree)."""
        return float((self.probs.max(axis=0) - self.probs.min(axis=0)).max())


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return e / e.sum()


def dropout_spread(lm: LiveModel, ids: list[int], p: float, passes: int, seed: int = 0) -> DropoutSpread:
    """`passes` traced passes over `ids` with FFN dropout p, each with its own masks (seeds seed, seed + 1, ...)."""
    clean = _softmax(trace(lm, ids).logits[-1])
    rows = [_softmax(trace(lm, ids, interventions=dropout_interventions(p, seed + i)).logits[-1])
            for i in range(int(passes))]
    return DropoutSpread(p=float(p), probs=np.stack(rows), clean=clean)


def config_dropout(lm: LiveModel) -> dict[str, float]:
    """The dropout rates SmolLM2's own config declares (read from the live model, not typed in)."""
    cfg = lm.model.config
    return {name: float(getattr(cfg, name)) for name in ("attention_dropout", "hidden_dropout", "embd_pdrop",
                                                          "resid_pdrop") if hasattr(cfg, name)}
