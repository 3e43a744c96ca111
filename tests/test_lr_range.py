"""The range test's reading (smoothing, minimum, cliff), the schedule variants, the published recipes and the
charts of the hyperparameters page."""
import math

import numpy as np
import pytest

from charts.hyperparameters import range_test, schedule_curves, schedule_runs
from engine.training.lab import RunConfig
from engine.training.lr_range import SHAPES, range_test_config, read_range_test, shape_variants, smoothed
from engine.training.recipes import PUBLISHED_RECIPES
from engine.training.schedules import Schedule


def test_variants_keep_everything_but_the_shape():
    base = Schedule("wsd", 0.01, 7, 0.25, 0.3)
    variants = shape_variants(base)
    assert tuple(variants) == SHAPES
    for kind, s in variants.items():
        assert s.kind == kind and (s.peak_lr, s.warmup_steps, s.min_lr_ratio, s.decay_fraction) == (0.01, 7, 0.25, 0.3)
    # the warmups coincide, the ends differ: constant stays at the peak, the others reach the floor
    curves = {k: s.curve(50) for k, s in variants.items()}
    np.testing.assert_allclose(curves["constant"][:7], curves["cosine"][:7])
    assert curves["constant"][-1] == 0.01 and curves["cosine"][-1] == pytest.approx(0.0025)
    assert curves["wsd"][-1] == pytest.approx(0.0025)


def test_range_config_grows_by_one_factor_from_lowest_to_highest():
    config = range_test_config(RunConfig(seed=3, batch_size=8, clip_norm=0.0), 40, 1e-4, 1.0)
    assert (config.seed, config.batch_size, config.clip_norm, config.steps) == (3, 8, 0.0, 40)
    lrs = config.schedule.curve(40)
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, (1.0 / 1e-4) ** (1 / 39))
    with pytest.raises(ValueError):
        range_test_config(RunConfig(), 40, 1.0, 0.1)


def test_smoothing_is_a_bias_corrected_moving_average():
    np.testing.assert_allclose(smoothed([2.0] * 10), 2.0)      # no pull towards 0 at the start
    values = [4.0, 3.0, 5.0, 1.0]
    avg, expected = 0.0, []
    for t, v in enumerate(values, 1):
        avg = 0.9 * avg + 0.1 * v
        expected.append(avg / (1 - 0.9 ** t))
    np.testing.assert_allclose(smoothed(values), expected)
    assert np.isinf(smoothed([1.0, float("nan"), 1.0])[1:]).all()


def test_reading_finds_the_minimum_and_the_first_step_back_above_the_start():
    lrs = np.logspace(-5, 1, 121)
    x = np.log10(lrs)
    losses = 4.0 - 2.0 * np.exp(-((x + 1.5) ** 2) / 1.0)          # a valley centred at 10^-1.5
    losses[x > -0.5] += 3.0 * (x[x > -0.5] + 0.5) ** 2 * 4        # then a steep climb
    reading = read_range_test(lrs, losses, beta=0.0)               # beta 0: no smoothing, exact positions
    assert reading.best_step == int(np.argmin(losses))
    assert reading.best_lr == pytest.approx(lrs[np.argmin(losses)])
    first_above = next(i for i in range(reading.best_step, len(lrs)) if losses[i] > losses[0])
    assert reading.cliff_step == first_above and reading.cliff_lr == pytest.approx(lrs[first_above])
    assert reading.suggested_peak == pytest.approx(reading.best_lr / 10)
    calm = read_range_test(lrs[:60], losses[:60], beta=0.0)
    assert calm.cliff_step is None and calm.cliff_lr is None
    diverged = read_range_test([1e-3, 1e-2, 1e-1, 1.0], [4.0, 3.0, 2.5, float("nan")], beta=0.0)
    assert diverged.best_step == 2 and diverged.cliff_step == 3


def test_published_recipes_shrink_the_rate_as_models_grow():
    by_name = {r.model: r for r in PUBLISHED_RECIPES}
    assert by_name["GPT-3"].peak_lr < by_name["GPT-3 Small"].peak_lr
    assert by_name["LLaMA-65B"].peak_lr < by_name["LLaMA-7B"].peak_lr
    assert all(r.betas == (0.9, 0.95) and r.weight_decay == 0.1 and r.clip_norm == 1.0 for r in PUBLISHED_RECIPES)


def test_charts_draw_every_run_and_mark_the_range_reading():
    curves = [Schedule(k).curve(30).tolist() for k in SHAPES]
    fig = schedule_curves(["a", "b", "<c>"], list(SHAPES), curves, "wsd", title="t")
    assert len(fig.data) == 3 and fig.data[2].line.width > fig.data[0].line.width
    runs = schedule_runs(["a", "b"], ["constant", "cosine"], [[1, 2]] * 2, [[0.1, 0.1]] * 2, [[3.0, 2.0]] * 2,
                         [[0, 2]] * 2, [[4.0, 2.5]] * 2, math.log(60))
    assert len(runs.data) == 6
    lrs = np.logspace(-5, 1, 20)
    losses = np.linspace(4, 2, 20)
    fig = range_test(lrs, losses, losses, 4.0, 1e-2, 2.5, None, None)
    assert len(fig.data) == 3 and fig.layout.xaxis.type == "log"
    fig = range_test(lrs, losses, losses, 4.0, 1e-2, 2.5, 1.0, 4.5)
    assert len(fig.data) == 4
