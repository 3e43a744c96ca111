"""Learning-rate schedules as plain formulas of the step: what a schedule designer draws is what a run uses.

Steps are counted from 0 to N - 1. Every schedule but the exponential ramp starts with a linear warmup of W
steps, lr(s) = peak * (s + 1) / W, so the first update is already small but not zero. After it:

- constant: lr = peak.
- cosine: lr = floor + (peak - floor) * (1 + cos(pi * p)) / 2, with p = (s - W) / (N - 1 - W) going from 0 at
  the end of the warmup to 1 at the last step (the last step uses the floor).
- wsd (warmup-stable-decay): peak until the last D = round(decay_fraction * N) steps, then a straight line down
  to the floor, reached at the last step. A run can be stopped at any point of its stable phase and decayed.
- exponential: from floor to peak, multiplying by the same factor each step, with no warmup: the learning-rate
  range test (Smith 2017) that finds the rate at which training diverges.

floor = min_lr_ratio * peak.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("constant", "cosine", "wsd", "exponential")
KIND_NAMES = {"constant": "constant", "cosine": "warmup + cosine", "wsd": "warmup-stable-decay",
              "exponential": "exponential ramp (range test)"}


@dataclass(frozen=True)
class Schedule:
    kind: str = "cosine"
    peak_lr: float = 3e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1      # the floor, as a fraction of the peak
    decay_fraction: float = 0.2    # wsd: the share of the run spent decaying

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {KINDS}")
        if not (self.peak_lr > 0 and math.isfinite(self.peak_lr)):
            raise ValueError("the peak learning rate must be a positive number")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.decay_fraction <= 1:
            raise ValueError("warmup >= 0, 0 <= min_lr_ratio <= 1 and 0 <= decay_fraction <= 1")
        if self.kind == "exponential" and self.min_lr_ratio <= 0:
            raise ValueError("the exponential ramp needs a floor above 0 to start from")

    @property
    def floor(self) -> float:
        return self.peak_lr * self.min_lr_ratio

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of step `step` (0-based) in a run of `total` steps."""
        if total < 1 or not 0 <= step < total:
            raise ValueError(f"step {step} is outside a run of {total} steps")
        peak, floor = self.peak_lr, self.floor
        if self.kind == "exponential":
            return peak if total == 1 else floor * (peak / floor) ** (step / (total - 1))
        warmup = min(self.warmup_steps, total)
        if step < warmup:
            return peak * (step + 1) / warmup
        if self.kind == "constant":
            return peak
        if self.kind == "cosine":
            span = total - 1 - warmup
            progress = 1.0 if span <= 0 else (step - warmup) / span
            return floor + (peak - floor) * (1 + math.cos(math.pi * progress)) / 2
        decay = round(self.decay_fraction * total)
        start = max(warmup, total - decay)   # the first step of the decay
        if decay == 0 or step < start:
            return peak
        return peak - (peak - floor) * (step - start + 1) / (total - start)

    def curve(self, total: int) -> np.ndarray:
        """lr at every step of a run of `total` steps."""
        return np.array([self.lr_at(s, total) for s in range(total)])
