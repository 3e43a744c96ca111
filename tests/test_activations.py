"""engine.inside.activations: the hand-written formulas equal torch's functions and gradients; the gate histograms count
every value the model's SiLU receives; the swap changes the perplexity."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charts.activations import _nice_step, curves, gate_histogram
from engine.inside import activations as av
from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace

TORCH = {"ReLU": F.relu, "GELU": F.gelu, "SiLU": F.silu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh}
XS = np.concatenate([np.linspace(-12, 12, 2401), [-60.0, -1e-9, 0.0, 1e-9, 60.0]])
TEXT = "The old lighthouse keeper climbed the spiral stairs every evening and watched the ships until dawn."
ROOT = Path(__file__).resolve().parent.parent


def test_every_function_has_a_torch_reference():
    assert set(av.FUNCTIONS) == set(TORCH)


@pytest.mark.parametrize("name", list(TORCH))
def test_formulas_equal_torch(name):
    x = torch.tensor(XS, dtype=torch.float64)
    np.testing.assert_allclose(av.FUNCTIONS[name].function(XS), TORCH[name](x).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(TORCH))
def test_slopes_equal_torch_autograd(name):
    x = torch.tensor(XS, dtype=torch.float64, requires_grad=True)
    TORCH[name](x).sum().backward()
    np.testing.assert_allclose(av.FUNCTIONS[name].derivative(XS), x.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_swiglu_is_silu_of_the_gate_times_up():
    g, u = np.meshgrid(np.linspace(-6, 6, 31), np.linspace(-6, 6, 29))
    expected = F.silu(torch.tensor(g)) * torch.tensor(u)
    np.testing.assert_allclose(av.swiglu(g, u), expected.numpy(), rtol=1e-12, atol=1e-12)


def test_minima_quoted_in_the_prose():
    silu, gelu = av.minimum("SiLU"), av.minimum("GELU")
    assert (round(silu.x, 3), round(silu.y, 3)) == (-1.278, -0.278)
    assert (round(gelu.x, 3), round(gelu.y, 3)) == (-0.752, -0.170)
    prose = (ROOT / "concepts" / "activation-functions.md").read_text()
    for figure in ("-0.278", "-1.278", "-0.170", "-0.752", "1.954", "1.762", "-0.159", "-0.269"):
        assert figure in prose
    f = {n: av.FUNCTIONS[n].function for n in ("ReLU", "GELU", "SiLU")}
    assert [round(float(f[n](np.array([2.0]))[0]), 3) for n in f] == [2.0, 1.954, 1.762]
    assert [round(float(f[n](np.array([-1.0]))[0]), 3) for n in f] == [0.0, -0.159, -0.269]
    assert av.minimum("ReLU").y == 0.0   # no dip: the lower end of the range


def test_histogram_counts_every_value_and_gathers_the_tails():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(-0.5, 1.2, 20_000), [40.0, -30.0]])
    h = av.histogram(3, values)
    assert h.total == values.size
    assert h.below >= 1 and h.above >= 1 and h.minimum == -30.0 and h.maximum == 40.0
    assert np.allclose(np.diff(h.edges), av.BIN_WIDTH) and h.edges[0] * 2 == round(h.edges[0] * 2)
    assert h.share_negative == pytest.approx((values < 0).mean())
    silu = values / (1 + np.exp(-values))
    assert h.share_near_zero == pytest.approx((np.abs(silu) < av.NEAR_ZERO).mean())
    inside = values[(values >= h.edges[0]) & (values <= h.edges[-1])]
    assert h.counts.sum() == inside.size
    assert av.histogram(0, np.zeros(10)).total == 10   # a degenerate spread still gets a bin


def test_gate_stats_count_tokens_times_ffn_width(lm):
    ids = token_ids(lm, TEXT)
    stats = av.gate_stats(lm, ids)
    width = lm.model.config.intermediate_size
    assert stats.ffn_dim == width and len(stats.layers) == lm.model.config.num_hidden_layers
    gates = trace(lm, ids, record={"gate"})["gate"]
    for h, g in zip(stats.layers, gates):
        assert h.total == len(ids) * width
        assert h.share_negative == pytest.approx(float((g < 0).mean()))
        assert h.minimum == pytest.approx(float(g.min())) and h.maximum == pytest.approx(float(g.max()))
    # the prose: "around half or more of the gate values are negative" on ordinary text
    assert np.mean([h.share_negative for h in stats.layers]) > 0.45


def test_swapping_the_activation_changes_the_perplexity(lm):
    ids = token_ids(lm, TEXT)
    result = av.swapped(lm, ids)
    assert set(result) == {"SiLU", "ReLU", "GELU"}
    assert result["SiLU"].perplexity == pytest.approx(perplexity(lm, ids).perplexity)
    assert result["ReLU"].interventions == Interventions(activation="relu")
    assert result["ReLU"].perplexity > 3 * result["SiLU"].perplexity
    assert result["SiLU"].perplexity < result["GELU"].perplexity < result["ReLU"].perplexity
    assert re.search(r"\bsilu\b", lm.model.config.hidden_act)   # the prose: its config names "silu"


def test_charts_draw_every_count_and_every_curve():
    h = av.histogram(0, np.random.default_rng(1).normal(0, 2, 5000))
    xs = np.linspace(-2, 2, 5)
    fig = gate_histogram(h.edges, h.counts, h.below, h.above, h.minimum, h.maximum, {"SiLU": (xs, xs)})
    bars = [t for t in fig.data if t.type == "bar"]
    assert sum(int(np.sum(t.y)) for t in bars) == 5000
    assert [t.name for t in fig.data if t.type == "scatter"] == ["SiLU(x)"]
    both = curves(xs, {"ReLU": xs, "SiLU": xs}, {"ReLU": xs, "SiLU": xs})
    assert [t.name for t in both.data] == ["ReLU", "SiLU", "ReLU′", "SiLU′"]
    assert len(curves(xs, {"ReLU": xs}).data) == 1
    assert [_nice_step(r) for r in (0.7, 1.0, 3.1, 6.2, 42.0)] == [1.0, 1.0, 5.0, 10.0, 50.0]
