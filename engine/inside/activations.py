"""Activation functions written out from their formulas, the real gate values they meet inside SmolLM2, and
what it costs the model to have its SiLU swapped for another function.

The formulas are plain numpy on purpose: the page shows the mechanism, and the tests hold every curve and
derivative to torch's own functions (torch.nn.functional and autograd). The model's side comes from the
traced forward: "gate" is the pre-activation w_gate · x that SiLU receives in every SwiGLU FFN, and the
swap uses its `activation` intervention with the perplexity of engine/model/perplexity.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engine.model.live_model import LiveModel
from engine.model.perplexity import Perplexity, perplexity
from engine.model.traced import ACTIVATIONS, Interventions, trace

Curve = Callable[[np.ndarray], np.ndarray]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + e^-x) written as 0.5 (1 + tanh(x/2)): the same function, with no overflow for large |x|
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(x, np.float64) / math.sqrt(2.0)))


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * np.square(x)) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Activation:
    name: str          # as the page shows it
    formula: str       # LaTeX
    function: Curve
    derivative: Curve
    where: str         # who uses it


FUNCTIONS: dict[str, Activation] = {a.name: a for a in (
    Activation("ReLU", r"\max(0, x)", lambda x: np.maximum(np.asarray(x, np.float64), 0.0),
               # torch's convention at the kink: the gradient of relu at exactly 0 is 0
               lambda x: (np.asarray(x) > 0).astype(np.float64),
               "the original transformer (2017), most CNNs"),
    Activation("GELU", r"x\,\Phi(x)", lambda x: np.asarray(x, np.float64) * _normal_cdf(x),
               lambda x: _normal_cdf(x) + np.asarray(x, np.float64) * _normal_pdf(x),
               "BERT, GPT-2, GPT-3"),
    Activation("SiLU", r"x\,\sigma(x)", lambda x: np.asarray(x, np.float64) * sigmoid(x),
               lambda x: sigmoid(x) * (1.0 + np.asarray(x, np.float64) * (1.0 - sigmoid(x))),
               "the gate of SwiGLU: LLaMA, SmolLM2, Qwen, PaLM"),
    Activation("Sigmoid", r"\sigma(x) = \frac{1}{1+e^{-x}}", sigmoid, lambda x: sigmoid(x) * (1.0 - sigmoid(x)),
               "early neural networks; gates inside LSTMs"),
    Activation("Tanh", r"\tanh(x)", lambda x: np.tanh(np.asarray(x, np.float64)),
               lambda x: 1.0 - np.square(np.tanh(np.asarray(x, np.float64))),
               "recurrent networks (RNNs, LSTMs)"),
)}
# The names the traced forward accepts for its `activation` intervention, by page name.
SWAPPABLE = {"SiLU": "silu", "ReLU": "relu", "GELU": "gelu"}
assert set(SWAPPABLE.values()) == set(ACTIVATIONS)


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """SiLU(gate) x up, elementwise: the product each FFN neuron sends on to W_down."""
    return FUNCTIONS["SiLU"].function(gate) * np.asarray(up, np.float64)


@dataclass(frozen=True)
class Minimum:
    x: float
    y: float


def minimum(name: str, lo: float = -6.0, hi: float = 0.0) -> Minimum:
    """Where a function dips lowest on [lo, hi]: found by bisection on its derivative (SiLU: x about -1.278)."""
    f, df = FUNCTIONS[name].function, FUNCTIONS[name].derivative
    a, b = lo, hi
    if not (df(np.array([a]))[0] < 0 < df(np.array([b]))[0]):
        x = a if f(np.array([a]))[0] < f(np.array([b]))[0] else b
        return Minimum(x, float(f(np.array([x]))[0]))
    for _ in range(80):
        m = 0.5 * (a + b)
        a, b = (m, b) if df(np.array([m]))[0] < 0 else (a, m)
    x = 0.5 * (a + b)
    return Minimum(x, float(f(np.array([x]))[0]))


# --- the model's own gate values -----------------------------------------------------------------------------

NEAR_ZERO = 0.1      # |SiLU(gate)| below this: the neuron passes on almost nothing
BIN_WIDTH = 0.1
TAIL_PERCENT = 0.1   # values beyond the 0.1th and 99.9th percentiles are gathered in two end bins


@dataclass(frozen=True, eq=False)
class GateHistogram:
    """One layer's gate pre-activations over a text, binned. counts.sum() + below + above = tokens x ffn_dim."""
    layer: int
    edges: np.ndarray       # [bins + 1]
    counts: np.ndarray      # [bins] int64
    below: int              # values under edges[0] (the far left tail)
    above: int              # values over edges[-1]
    minimum: float
    maximum: float
    share_negative: float   # gate < 0: what ReLU would set to exactly zero
    share_near_zero: float  # |SiLU(gate)| < NEAR_ZERO
    median: float

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.below + self.above


@dataclass(frozen=True, eq=False)
class GateStats:
    ids: tuple[int, ...]
    ffn_dim: int
    layers: tuple[GateHistogram, ...]


def histogram(layer: int, values: np.ndarray) -> GateHistogram:
    """Bins of BIN_WIDTH over the middle 99.8% of the values (edges on whole halves), tails in two end counts."""
    v = np.asarray(values, np.float64).ravel()
    lo_q, hi_q = np.percentile(v, [TAIL_PERCENT, 100 - TAIL_PERCENT])
    lo, hi = math.floor(lo_q * 2) / 2, math.ceil(hi_q * 2) / 2
    if hi <= lo:
        hi = lo + 0.5
    bins = int(round((hi - lo) / BIN_WIDTH))
    edges = lo + BIN_WIDTH * np.arange(bins + 1)
    counts, _ = np.histogram(v, bins=edges)
    act = FUNCTIONS["SiLU"].function(v)
    return GateHistogram(layer=layer, edges=edges, counts=counts, below=int((v < lo).sum()),
                         above=int((v > edges[-1]).sum()), minimum=float(v.min()), maximum=float(v.max()),
                         share_negative=float((v < 0).mean()), share_near_zero=float((np.abs(act) < NEAR_ZERO).mean()),
                         median=float(np.median(v)))


def gate_stats(lm: LiveModel, ids: list[int] | tuple[int, ...]) -> GateStats:
    """One traced pass recording every layer's gate; only the histograms are kept (a few kB per layer)."""
    tp = trace(lm, list(ids), record=("gate",))
    gates = tp["gate"]   # [layers, T, ffn_dim]
    return GateStats(ids=tuple(ids), ffn_dim=gates.shape[-1],
                     layers=tuple(histogram(layer, gates[i]) for i, layer in enumerate(tp.layers)))


def swapped(lm: LiveModel, ids: list[int] | tuple[int, ...]) -> dict[str, Perplexity]:
    """The text's perplexity with every FFN gate using each swappable function (SiLU is the trained one)."""
    return {name: perplexity(lm, ids, Interventions(activation=key)) for name, key in SWAPPABLE.items()}
