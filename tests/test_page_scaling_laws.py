"""The scaling-laws page: the compute-optimal (N, D) it shows for each law satisfies C = 6ND and is the lowest
loss on the budget line (its neighbours are higher); real models sit at their own 6ND with SmolLM2's parameter
count read from the live model; the reader's model is scored by both laws."""
import json

import numpy as np
import pytest

from engine.training.data_budget import SMOLLM2_TRAINING_TOKENS
from engine.training.scaling import LAWS, closed_form_optimum, numerical_optimum
from tests.pages import assert_no_exception, open_page, plotly_array


def chart(at, key):
    for c in at.get("plotly_chart"):
        if c.proto.id.endswith(f"-{key}"):
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key}")


def metric(at, label):
    return next(m for m in at.metric if m.label == label)


@pytest.mark.parametrize("budget", ["6e23", "1e21"])
def test_the_shown_optimum_spends_the_budget_and_beats_its_neighbours(lm, budget):
    at = open_page("scaling-laws", {"budget": budget})
    assert_no_exception(at)
    c = float(budget)
    traces = chart(at, "iso")["data"]
    for i, law in enumerate(LAWS):
        line, star = traces[2 * i], traces[2 * i + 1]
        n = plotly_array(star["x"])[0]
        d = c / (6 * n)
        assert 6 * n * d == pytest.approx(c)
        assert n == pytest.approx(numerical_optimum(law, c).parameters, rel=1e-5)   # formula-free search agrees
        shown_loss = plotly_array(star["y"])[0]
        assert shown_loss == pytest.approx(float(law.loss(n, d)), rel=1e-12)
        for factor in (0.95, 0.995, 1.005, 1.05):                                 # neighbours on the line are higher
            m = n * factor
            assert law.loss(m, c / (6 * m)) > shown_loss
        sizes, losses = plotly_array(line["x"]), plotly_array(line["y"])
        np.testing.assert_allclose(losses, law.loss(sizes, c / (6 * sizes)), rtol=1e-12)
        assert losses.min() >= shown_loss - 1e-12
        best = closed_form_optimum(law, c)
        size, tokens, ratio, loss = at.metric[4 * i:4 * i + 4]      # one column of four metrics per law
        assert (size.label, tokens.label, ratio.label, loss.label) == (
            "Best size N", "Its tokens D", "Tokens per parameter", "Predicted loss")
        assert loss.value == f"{best.loss:.3f} nats" and ratio.value == f"{best.tokens_per_parameter:,.1f}"
        assert tokens.delta.startswith("6ND = ") and size.delta.startswith("search: ")


def test_models_sit_at_their_own_compute_with_smollm2_read_from_the_model(lm):
    at = open_page("scaling-laws")
    assert_no_exception(at)
    points = chart(at, "frontier")["data"][-1]
    names, c, n = points["text"], plotly_array(points["x"]), plotly_array(points["y"])
    at_ = dict(zip(names, zip(c, n)))
    assert at_["GPT-3"] == pytest.approx((6 * 175e9 * 300e9, 175e9))
    assert at_["Chinchilla"] == pytest.approx((6 * 70e9 * 1.4e12, 70e9))
    assert at_["SmolLM2-135M"] == pytest.approx((6 * lm.card.parameters * SMOLLM2_TRAINING_TOKENS,
                                                 lm.card.parameters))
    assert metric(at, "SmolLM2 parameters").value == f"{lm.card.parameters:,}"
    ratio = closed_form_optimum(LAWS[1], 6 * lm.card.parameters * SMOLLM2_TRAINING_TOKENS).parameters / lm.card.parameters
    assert metric(at, "Compute-optimal size for that").delta.startswith(f"{ratio:,.1f}×")


def test_the_readers_model_is_scored_by_both_laws(lm):
    at = open_page("scaling-laws", {"params": "70000", "tokens": "1400"})
    assert_no_exception(at)
    table = at.dataframe[0].value
    n, d = 70e9, 1.4e12
    for law in LAWS:
        row = table[table["law"] == law.name].iloc[0]
        assert row["predicted loss"] == pytest.approx(float(law.loss(n, d)))
        assert row["E (floor)"] + row["A/N^α (finite model)"] + row["B/D^β (finite data)"] == pytest.approx(
            row["predicted loss"])
        assert row["best loss for the same compute"] <= row["predicted loss"]
    assert metric(at, "Your model, Epoch AI refit").value == f"{float(LAWS[1].loss(n, d)):.3f} nats"


@pytest.mark.parametrize("params", [{"budget": "banana"}, {"budget": "1e400"}, {"params": "1e400", "tokens": "nan"},
                                    {"params": "-5", "tokens": "0"}])
def test_bad_links_fall_back(lm, params):
    at = open_page("scaling-laws", params)
    assert_no_exception(at)
    assert len(at.get("plotly_chart")) == 2
