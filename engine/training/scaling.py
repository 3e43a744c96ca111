"""Chinchilla-style scaling laws: the loss of a model of N parameters trained on D tokens, and the best split
of a compute budget between the two.

    L(N, D) = E + A / N^alpha + B / D^beta          (Hoffmann et al. 2022, "approach 3")

E is the loss no model reaches (the text's own entropy, on their corpus); A / N^alpha is what a finite model
gives up, B / D^beta what finite data gives up. Training compute is about C = 6 N D FLOPs (data_budget), so a
budget fixes a line N D = C / 6 in the (N, D) plane, and along it one split has the lowest predicted loss.

Two published fits of the same form (typed in, with their sources; nothing here can measure them):
- Hoffmann et al. 2022 as printed in the paper (eq. 10): E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28.
- Besiroglu, Erdil, Barnett and You 2024 ("Chinchilla Scaling: A replication attempt", Epoch AI,
  arXiv 2404.10102), refitted on data read off Hoffmann's plots: E 1.8172, A 482.01, B 2085.43,
  alpha 0.3478, beta 0.3658. Its exponents are nearly equal, so N and D grow at about the same rate with
  compute, as Hoffmann's other two approaches found; the printed fit's do not.

The optimum is computed twice, in closed form (Hoffmann et al. eq. 4) and by a numerical search along the
iso-compute line, so each checks the other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from engine.training.data_budget import compute_flops


@dataclass(frozen=True)
class ScalingLaw:
    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    def loss(self, parameters, tokens):
        """Predicted loss (nats per token of the fit's corpus) for N parameters trained on D tokens; arrays
        broadcast."""
        n, d = np.asarray(parameters, dtype=float), np.asarray(tokens, dtype=float)
        return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

    @property
    def parameter_share(self) -> float:
        """a in N_opt ~ C^a: beta / (alpha + beta). 0.5 means parameters and tokens grow at the same rate."""
        return self.beta / (self.alpha + self.beta)


HOFFMANN = ScalingLaw("Hoffmann et al. 2022", 1.69, 406.4, 410.7, 0.34, 0.28,
                      "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, eq. 10")
EPOCH = ScalingLaw("Epoch AI refit 2024", 1.8172, 482.01, 2085.43, 0.3478, 0.3658,
                   "Besiroglu et al. 2024, Chinchilla Scaling: A replication attempt (arXiv 2404.10102)")
LAWS = (HOFFMANN, EPOCH)


@dataclass(frozen=True)
class Optimum:
    """The compute-optimal split of a budget under one law."""
    compute: float
    parameters: float
    tokens: float
    loss: float

    @property
    def tokens_per_parameter(self) -> float:
        return self.tokens / self.parameters


def _check_budget(compute: float) -> None:
    if not (math.isfinite(compute) and compute > 0):
        raise ValueError("the compute budget must be a positive number of FLOPs")


def closed_form_optimum(law: ScalingLaw, compute: float) -> Optimum:
    """Hoffmann et al. eq. 4: set dL/dN = 0 with D = C / (6N):
    N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = (C/6) / N_opt, G = (alpha A / (beta B))^(1/(alpha+beta)).
    E does not move the optimum, only the loss there."""
    _check_budget(compute)
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1.0 / (law.alpha + law.beta))
    n = g * (compute / 6.0) ** law.parameter_share
    d = compute / (6.0 * n)
    return Optimum(compute, n, d, float(law.loss(n, d)))


def numerical_optimum(law: ScalingLaw, compute: float) -> Optimum:
    """The lowest loss along N D = C / 6 found by a bounded search over log10 N (no formula used)."""
    _check_budget(compute)
    def along_line(log_n: float) -> float:
        n = 10.0 ** log_n
        return float(law.loss(n, compute / (6.0 * n)))
    top = math.log10(compute / 6.0)   # beyond it D < 1 token
    found = minimize_scalar(along_line, bounds=(0.0, top), method="bounded", options={"xatol": 1e-10})
    n = 10.0 ** float(found.x)
    return Optimum(compute, n, compute / (6.0 * n), float(found.fun))


def iso_compute_line(law: ScalingLaw, compute: float, parameters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, loss) for each model size on the budget's line D = C / (6N)."""
    n = np.asarray(parameters, dtype=float)
    d = compute / (6.0 * n)
    return d, law.loss(n, d)


def frontier(law: ScalingLaw, budgets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute-optimal (N, D) for each budget, in closed form."""
    points = [closed_form_optimum(law, float(c)) for c in np.asarray(budgets, dtype=float)]
    return np.array([p.parameters for p in points]), np.array([p.tokens for p in points])


def compute_of(parameters: float, tokens: float) -> float:
    """Training compute of a model: C = 6 N D (the lab's one formula, reused)."""
    return compute_flops(parameters, tokens)
