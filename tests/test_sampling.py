"""engine.decoding.sampling on SmolLM2's real logits: temperature, entropy, top-k, top-p and min-p, and the charts."""
import itertools
import json

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from charts.sampling import entropy_curve as entropy_curve_chart
from charts.sampling import survivor_bars, temperature_bars
from engine.decoding.generation import filter_logits, generate, next_token_distribution
from engine.decoding.sampling import (apply_temperature, entropy_bits, entropy_curve, min_p_mask, nucleus_size,
                             sampling_filter, top_k_mask, top_p_mask)

PROMPTS = ["My favourite food is", "The capital of France is", "Once upon a time, there was a"]


@pytest.fixture(scope="module")
def logits(lm):
    return {p: next_token_distribution(lm, p).logits for p in PROMPTS}


def test_temperature_zero_is_the_greedy_token(lm, logits):
    for prompt, row in logits.items():
        greedy = apply_temperature(row, 0.0)
        assert greedy.sum() == 1.0 and greedy.max() == 1.0
        argmax = int(np.argmax(greedy))
        assert argmax == int(np.argmax(next_token_distribution(lm, prompt).probabilities))
        assert argmax == generate(lm, prompt, 1).new_ids[0]
    assert int(np.argmax(apply_temperature(logits[PROMPTS[1]], float("nan")))) == int(np.argmax(logits[PROMPTS[1]]))
    assert int(np.argmax(apply_temperature(logits[PROMPTS[1]], -1))) == int(np.argmax(logits[PROMPTS[1]]))


@pytest.mark.parametrize("t", [0.0, 0.05, 0.3, 0.7, 1.0, 1.5, 2.0, 50.0])
def test_probabilities_sum_to_one_at_any_temperature(logits, t):
    for row in logits.values():
        p = apply_temperature(row, t)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert (p >= 0).all()


def test_temperature_one_is_the_models_own_softmax(lm, logits):
    for prompt, row in logits.items():
        model = torch.softmax(torch.from_numpy(row).double(), -1).numpy()
        np.testing.assert_allclose(apply_temperature(row, 1.0), model, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(apply_temperature(row, 1.0), next_token_distribution(lm, prompt).probabilities)


def test_temperature_never_changes_the_ranking(logits):
    row = logits[PROMPTS[0]]
    top = np.argsort(-row, kind="stable")[:50]
    for t in (0.2, 0.7, 1.8):
        p = apply_temperature(row, t)
        assert np.all(np.diff(p[top]) <= 0)


def test_entropy_rises_with_temperature_and_matches_known_values(logits):
    temps = [0.05 * i for i in range(1, 41)]
    for row in logits.values():
        curve = entropy_curve(row, temps)
        assert np.all(np.diff(curve) > 0)
        assert curve[0] < 1.0 < curve[-1] < np.log2(row.size)
    # the concept page's worked example: logits (2, 1, 0)
    small = np.array([2.0, 1.0, 0.0])
    np.testing.assert_allclose(apply_temperature(small, 1), [0.665, 0.245, 0.090], atol=1e-3)
    np.testing.assert_allclose(apply_temperature(small, 0.5), [0.867, 0.117, 0.016], atol=1e-3)
    assert [round(entropy_bits(apply_temperature(small, t)), 2) for t in (0.5, 1, 2)] == [0.64, 1.20, 1.47]
    assert entropy_bits(np.ones(8) / 8) == pytest.approx(3.0)


def test_top_p_keeps_the_smallest_set_reaching_p(logits):
    for row, p in itertools.product(logits.values(), [0.01, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99]):
        probs = apply_temperature(row, 1.0)
        mask = top_p_mask(probs, p)
        m = int(mask.sum())
        ranked = np.sort(probs)[::-1]
        assert set(np.flatnonzero(mask)) == set(np.argsort(-probs, kind="stable")[:m])  # a prefix of the ranking
        assert ranked[:m].sum() >= p - 1e-12     # reaches p
        assert m == 1 or ranked[:m - 1].sum() < p  # one token fewer would not
    assert nucleus_size([0.5, 0.2, 0.15, 0.1, 0.05], 0.8) == 3


@pytest.mark.parametrize("p", [1e-9, 0.0, -3.0])
def test_top_p_always_keeps_at_least_one_token(logits, p):
    for row in logits.values():
        mask = top_p_mask(apply_temperature(row, 1.0), p)
        assert mask.sum() == 1 and mask[int(np.argmax(row))]


def test_top_k_and_off_switches(logits):
    row = logits[PROMPTS[0]]
    for k in (1, 5, 40):
        mask = top_k_mask(row, k)
        assert mask.sum() == k and row[mask].min() >= row[~mask].max()
    assert top_k_mask(row, 0).all() and top_k_mask(row, -1).all() and top_k_mask(row, 10 ** 6).all()
    assert top_p_mask(apply_temperature(row, 1), 1.0).all()
    assert min_p_mask(apply_temperature(row, 1), 0.0).all()


def test_worked_example_renormalisation():
    logits = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))
    np.testing.assert_allclose(sampling_filter(logits, 1.0, top_k=2).final[:2], [0.714, 0.286], atol=1e-3)
    np.testing.assert_allclose(sampling_filter(logits, 1.0, top_p=0.8).final[:3], [0.588, 0.235, 0.176], atol=1e-3)


def _boundary_only(row, t, k, p, mine, other):
    """Masks differing only where the mass ranked above a token is within float32 rounding of p."""
    if np.array_equal(mine, other):
        return True
    scaled = apply_temperature(row, t) * top_k_mask(row, k)
    scaled = scaled / scaled.sum()
    order = np.argsort(-scaled, kind="stable")
    before = dict(zip(order, np.cumsum(scaled[order]) - scaled[order]))
    return all(abs(before[i] - p) < 1e-5 for i in np.flatnonzero(mine != other))


def test_filter_matches_transformers_and_the_apps_generator(logits):
    checked = 0
    rows = [logits[PROMPTS[0]], logits[PROMPTS[1]]]
    for row, t, k, p in itertools.product(rows, [0.3, 1.0, 1.6], [0, 5, 50], [0.3, 0.9, 1.0]):
        mine = sampling_filter(row, t, k, p)
        assert mine.final.sum() == pytest.approx(1.0) and (mine.final[~mine.keep] == 0).all()
        assert mine.kept_mass == pytest.approx(mine.scaled[mine.keep].sum())
        assert (mine.keep <= mine.after_top_p).all() and (mine.after_top_p <= mine.after_top_k).all()
        scores = torch.from_numpy(row)[None]
        for warper in [TemperatureLogitsWarper(t)] + ([TopKLogitsWarper(k)] if k else []) + \
                      ([TopPLogitsWarper(p)] if p < 1 else []):
            scores = warper(None, scores)
        hf = torch.isfinite(scores[0]).numpy()
        app = torch.isfinite(filter_logits(torch.from_numpy(row), t, k, p)).numpy()
        assert _boundary_only(row, t, k, p, mine.keep, hf)
        assert _boundary_only(row, t, k, p, mine.keep, app)
        checked += 1
    assert checked == 2 * 3 * 3 * 3


def test_min_p_matches_transformers(logits):
    for row, min_p in itertools.product(logits.values(), [0.02, 0.1, 0.3]):
        scores = torch.from_numpy(row)[None]
        for warper in (TemperatureLogitsWarper(0.8), TopKLogitsWarper(40), TopPLogitsWarper(0.95),
                       MinPLogitsWarper(min_p)):
            scores = warper(None, scores)
        result = sampling_filter(row, 0.8, 40, 0.95, min_p)
        assert np.array_equal(result.keep, torch.isfinite(scores[0]).numpy())


def test_temperature_zero_filter_keeps_only_the_argmax(logits):
    row = logits[PROMPTS[0]]
    result = sampling_filter(row, 0.0, 50, 0.9)
    assert result.survivors == 1 and result.keep[int(np.argmax(row))] and result.final.max() == 1.0


def test_charts_carry_the_numbers():
    fig = temperature_bars(["a", "a"], [1, 2], [0.6, 0.4], [0.8, 0.2], 0.5)
    spec = json.loads(fig.to_json())
    assert [d["x"] for d in spec["data"]] == [[60.0, 40.0], [80.0, 20.0]]
    assert len(set(spec["data"][0]["y"])) == 2  # equal labels stay two bars
    fig = survivor_bars(["x", "y", "z"], [7, 8, 9], [0.7, 0.2, 0.1], ["kept", "top-p", "top-k"],
                        [1.0, 0.0, 0.0], [0.7, 0.9, 1.0], log_x=True)
    names = [d["name"] for d in json.loads(fig.to_json())["data"]]
    assert names == ["kept", "removed by top-k", "removed by top-p", "renormalised (what is sampled)"]
    fig = survivor_bars(["<b>x</b>", "<br>"], [1, 2], [0.6, 0.4], ["kept", "top-p"], [1.0, 0.0], [0.6, 1.0])
    labels = [y for d in json.loads(fig.to_json())["data"] for y in d["y"]]
    assert labels[0].startswith("&lt;b&gt;x&lt;/b&gt;") and any(y.startswith("&lt;br&gt;") for y in labels)
    fig = entropy_curve_chart([0.5, 1.0], [1.0, 2.0], [0.9, 0.6], 1.0, 2.0, 0.6)
    assert json.loads(fig.to_json())["data"][0]["y"] == [1.0, 2.0]
