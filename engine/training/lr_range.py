"""Choosing training hyperparameters with measurements: schedules side by side, and the learning-rate range test.

- `shape_variants(schedule)`: the same peak, warmup and floor drawn as each of the three usual shapes (constant,
  warmup + cosine, warmup-stable-decay), so runs that differ only by the shape can be trained and compared.
- `range_test_config(base, steps, lowest, highest)`: the base run with its learning rate growing exponentially
  from `lowest` to `highest` over `steps` steps (Smith 2017, "Cyclical learning rates for training neural
  networks", section 3.3). Early steps are too small to move the loss; then it falls fastest; past some rate each
  step overshoots and the loss climbs back up: the divergence cliff.
- `read_range_test(lrs, losses)`: where the minimum and the cliff are, read off a smoothed loss curve.

Why smoothing: each step's loss is measured on its own random minibatch, so it jitters by a few tenths of a nat.
The curve is smoothed with an exponential moving average (weight `beta` on the past, divided by 1 - beta^t so
the first values are not pulled towards 0, the bias correction Adam uses), as fastai's lr_find does.

Why "back above the first loss" marks the cliff: a run that has climbed back to the loss it started from (the
uniform guess, ln V) has undone everything it learned; the rate of that step no longer trains the model at all.
A lower threshold would be arbitrary; this one has a meaning a reader can check on the chart.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engine.training.lab import RunConfig
from engine.training.schedules import Schedule

SHAPES = ("constant", "cosine", "wsd")
SMOOTHING = 0.9
SUGGESTED_FRACTION = 0.1   # a peak rate about 10x below the range test's minimum (fastai's "lr_min / 10")


def shape_variants(schedule: Schedule, shapes: tuple[str, ...] = SHAPES) -> dict[str, Schedule]:
    """The schedule redrawn as each shape, keeping its peak, warmup, floor and decay fraction."""
    return {shape: replace(schedule, kind=shape) for shape in shapes}


def range_test_config(base: RunConfig, steps: int = 100, lowest: float = 1e-5, highest: float = 10.0) -> RunConfig:
    """The base run (same seed, batch, clipping, decay) with an exponential learning-rate ramp, evaluated only at
    its end: the test reads each step's own minibatch loss."""
    if not (0 < lowest < highest and math.isfinite(highest)):
        raise ValueError("the ramp needs 0 < lowest < highest")
    return replace(base, steps=int(steps), eval_every=int(steps),
                   schedule=Schedule("exponential", peak_lr=float(highest), warmup_steps=0,
                                     min_lr_ratio=float(lowest) / float(highest)))


def smoothed(losses, beta: float = SMOOTHING) -> np.ndarray:
    """Bias-corrected exponential moving average of the losses (non-finite losses stay non-finite)."""
    out = np.empty(len(losses))
    average = 0.0
    for t, loss in enumerate(np.asarray(losses, dtype=float), start=1):
        if not math.isfinite(loss):
            out[t - 1:] = np.inf
            break
        average = beta * average + (1 - beta) * loss
        out[t - 1] = average / (1 - beta ** t)
    return out


@dataclass(frozen=True)
class RangeReading:
    smooth: np.ndarray            # the smoothed loss at every step
    best_step: int                # 0-based index of the smallest smoothed loss
    best_lr: float                # the learning rate at that step
    best_loss: float
    cliff_step: int | None        # first step after the minimum whose smoothed loss is back above the first loss
    cliff_lr: float | None

    @property
    def suggested_peak(self) -> float:
        """A peak rate for a real run: a tenth of the rate at the minimum, safely left of the cliff."""
        return self.best_lr * SUGGESTED_FRACTION


def read_range_test(lrs, losses, beta: float = SMOOTHING) -> RangeReading:
    """The minimum and the divergence cliff of a range test's (learning rate, minibatch loss) pairs."""
    lrs = np.asarray(lrs, dtype=float)
    smooth = smoothed(losses, beta)
    if not len(smooth) or not np.isfinite(smooth[0]):
        raise ValueError("a range test needs at least one finite loss")
    best = int(np.argmin(np.where(np.isfinite(smooth), smooth, np.inf)))
    start = float(np.asarray(losses, dtype=float)[0])
    above = np.nonzero(~(smooth[best:] <= start))[0]   # also catches inf / nan
    cliff = int(best + above[0]) if above.size else None
    return RangeReading(smooth=smooth, best_step=best, best_lr=float(lrs[best]), best_loss=float(smooth[best]),
                        cliff_step=cliff, cliff_lr=float(lrs[cliff]) if cliff is not None else None)
