"""Optimizers compared with the lab's own update code: paths on 2-D loss surfaces, and a race of the baby GPT.

Both halves build their optimizer with `lab.make_optimizer`, the function every baby-GPT run uses, so the
SGD, momentum, Adam and AdamW seen stepping over a 2-D surface are exactly the torch.optim updates (and the
momentum 0.9, betas (0.9, 0.99) and weight-decay handling) that train the model further down the page.

- `surface_path(surface, optimizer, lr, steps, noise, seed, weight_decay)`: the walk of one point over a small
  analytic surface (Rosenbrock's banana valley, an ill-conditioned bowl, a bumpy bowl). `noise` adds Gaussian
  noise to every gradient, drawn from a per-call generator: the stand-in for minibatch noise that deterministic
  optimizer galleries leave out. The point is a (1, 2) matrix so that `make_optimizer` puts it in its decayed
  group, as it does the model's weight matrices.
- `race(base, optimizers)`: the same RunConfig (same seed: same initial weights, same batches) trained once per
  optimizer, each at its suggested peak rate, and the weight paths projected on their two main directions.
- `weight_paths(traces)`: that projection (PCA of every snapshot of every run, measured from the shared start).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch

from engine.training.lab import OPTIMIZERS, RunConfig, RunResult, StepReport, make_optimizer, train, with_optimizer
from engine.training.schedules import Schedule


@dataclass(frozen=True)
class Surface:
    name: str
    title: str
    start: tuple[float, float]
    minimum: tuple[float, float]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    lr: dict[str, float]      # a rate per optimizer that makes progress here without blowing up (see the tests)
    note: str

    def loss(self, xy: torch.Tensor) -> torch.Tensor:
        """The loss at points xy[..., 0], xy[..., 1] (any leading shape)."""
        x, y = xy[..., 0], xy[..., 1]
        if self.name == "rosenbrock":
            return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2
        if self.name == "ravine":
            # a bowl whose axes are turned 30 degrees, 40 times steeper across than along: condition number 40
            c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
            u, v = c * x + s * y, -s * x + c * y
            return 0.5 * (u ** 2 + 40 * v ** 2) / 10
        # a wide bowl with ripples: small local dips that a plain step can sit in
        return 0.1 * (x ** 2 + y ** 2) + 0.25 * (1 - torch.cos(2.5 * x) * torch.cos(2.5 * y))

    def grid(self, points: int = 80) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs = np.linspace(*self.x_range, points)
        ys = np.linspace(*self.y_range, points)
        xx, yy = np.meshgrid(xs, ys)
        with torch.no_grad():
            zz = self.loss(torch.from_numpy(np.stack([xx, yy], -1))).numpy()
        return xs, ys, zz


SURFACES = {
    "rosenbrock": Surface("rosenbrock", "Rosenbrock valley", (-1.5, 2.0), (1.0, 1.0), (-2.0, 2.0),
                          (-1.0, 3.0), {"sgd": 1e-3, "momentum": 3e-4, "adam": 0.1, "adamw": 0.1},
                          "a curved, nearly flat valley floor with steep walls"),
    "ravine": Surface("ravine", "Ravine (40:1)", (-3.0, 1.5), (0.0, 0.0), (-4.0, 4.0), (-3.2, 3.2),
                      {"sgd": 0.4, "momentum": 0.04, "adam": 0.08, "adamw": 0.08},
                      "curving 40 times more sharply across than along"),
    "bumpy": Surface("bumpy", "Bumpy bowl", (-3.2, 2.6), (0.0, 0.0), (-3.8, 3.8), (-3.8, 3.8),
                     {"sgd": 0.35, "momentum": 0.08, "adam": 0.08, "adamw": 0.08},
                     "a wide bowl with small dips on the way down"),
}


@dataclass(frozen=True)
class SurfacePath:
    surface: str
    optimizer: str
    lr: float
    points: np.ndarray      # (steps + 1, 2): the start, then the point after every update
    losses: np.ndarray      # (steps + 1,): the true loss (without the noise) at each point

    def first(self, steps: int) -> "SurfacePath":
        """The path's first `steps` updates: the same as a walk of `steps` (same updates, same noise draws), so a
        page can compute the longest walk once and let a steps slider cut it without recomputing."""
        return replace(self, points=self.points[:steps + 1], losses=self.losses[:steps + 1])

    @property
    def final_distance(self) -> float:
        """How far the last point is from the surface's minimum."""
        return float(np.hypot(*(self.points[-1] - np.array(SURFACES[self.surface].minimum))))


class _Point(torch.nn.Module):
    def __init__(self, start: tuple[float, float]):
        super().__init__()
        self.xy = torch.nn.Parameter(torch.tensor([start], dtype=torch.float64))   # (1, 2): a "matrix"


@torch.inference_mode(False)
def surface_path(surface: str, optimizer: str, steps: int, *, lr_factor: float = 1.0, noise: float = 0.0,
                 seed: int = 0, weight_decay: float = 0.0) -> SurfacePath:
    """Walk `steps` updates of `optimizer` over the surface from its start; noise is relative to each
    gradient's own length (noise 1 = noise as long as the gradient)."""
    spec = SURFACES[surface]
    lr = spec.lr[optimizer] * lr_factor
    point = _Point(spec.start)
    config = RunConfig(optimizer=optimizer, weight_decay=weight_decay,
                       schedule=Schedule("constant", peak_lr=lr, warmup_steps=0))
    opt = make_optimizer(config, point)
    generator = torch.Generator().manual_seed(int(seed))
    points, losses = [point.xy.detach()[0].clone()], []
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = spec.loss(point.xy[0])
            loss.backward()
            losses.append(float(loss.detach()))
            if noise > 0:
                g = point.xy.grad
                g.add_(torch.randn(g.shape, generator=generator, dtype=g.dtype) * noise * g.norm())
            opt.step()
            with torch.no_grad():   # a diverging walk is stopped at the edge rather than sent to infinity
                point.xy.clamp_(-1e3, 1e3)
            points.append(point.xy.detach()[0].clone())
    with torch.no_grad():
        losses.append(float(spec.loss(point.xy[0])))
    return SurfacePath(surface, optimizer, lr, torch.stack(points).numpy(), np.array(losses))


@dataclass(frozen=True)
class WeightPaths:
    steps: tuple[tuple[int, ...], ...]   # per run, the steps at which weights were kept
    coords: tuple[np.ndarray, ...]       # per run, (snapshots, 2): position along the two main directions
    explained: np.ndarray                # share of the spread of all snapshots that each direction holds


def weight_paths(traces: list[list[tuple[int, np.ndarray]]]) -> WeightPaths:
    """Project every run's weight snapshots on the two directions along which all of them spread most.

    The snapshots are measured from the first run's starting weights (every run starts there), stacked, and
    their top two right singular vectors give the axes (PCA without centring: the start stays at the origin).
    """
    origin = traces[0][0][1]
    stacked = np.concatenate([np.stack([w - origin for _, w in run]) for run in traces]).astype(np.float64)
    _, singular, vt = np.linalg.svd(stacked, full_matrices=False)
    axes = vt[:2]
    total = float((singular ** 2).sum())
    explained = (singular[:2] ** 2 / total) if total > 0 else np.zeros(2)
    coords = tuple(np.stack([w - origin for _, w in run]).astype(np.float64) @ axes.T for run in traces)
    return WeightPaths(tuple(tuple(s for s, _ in run) for run in traces), coords, explained)


@dataclass(frozen=True, eq=False)
class OptimizerRace:
    runs: tuple[RunResult, ...]     # one per optimizer, without their weight snapshots (kept small)
    paths: WeightPaths

    @property
    def same_start(self) -> bool:
        return len({r.initial_weights_digest for r in self.runs}) == 1

    @property
    def same_batches(self) -> bool:
        """Same batches: equal digests among the runs that ran to their end (a stopped run saw fewer)."""
        full = [r.batches_digest for r in self.runs if len(r.steps) == r.config.steps]
        return len(set(full)) <= 1


def race_configs(base: RunConfig, optimizers: tuple[str, ...] = OPTIMIZERS, lr_factor: float = 1.0
                 ) -> tuple[RunConfig, ...]:
    """The base run once per optimizer at its suggested peak rate (times lr_factor); weights kept for the paths,
    and the validation loss measured ten times per run so the curves can be told apart."""
    every = max(1, base.steps // 25)
    base = replace(base, eval_every=max(5, base.steps // 10))
    configs = []
    for name in optimizers:
        config = with_optimizer(replace(base, track_weights_every=every), name)
        configs.append(replace(config, schedule=replace(config.schedule, peak_lr=config.schedule.peak_lr * lr_factor)))
    return tuple(configs)


def race(configs: tuple[RunConfig, ...], on_step: Callable[[int, StepReport], None] = lambda i, r: None,
         should_stop: Callable[[], bool] = lambda: False) -> OptimizerRace:
    """Train each config in turn (on_step gets the run's index and its report) and project their paths."""
    runs, traces = [], []
    for index, config in enumerate(configs):
        run = train(config, on_step=lambda report, i=index: on_step(i, report), should_stop=should_stop)
        traces.append(list(run.weight_trace))
        runs.append(replace(run, weight_trace=(), final_weights={}))
    return OptimizerRace(tuple(runs), weight_paths(traces))
