"""The hyperparameters page: the schedule shown equals the formula at every step (recomputed here, independently
of engine.training.schedules), the runs it trains are the lab's runs with that schedule, and the range test's
minimum and cliff are read correctly from the losses shown."""
import math

import numpy as np
import pytest

from engine.training.corpus import load_corpus
from engine.training.lab import RunConfig, train
from engine.training.schedules import Schedule
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until

SHAPES = ("constant", "cosine", "wsd")


def formula(kind: str, s: int, total: int, peak: float, warmup: int, floor_ratio: float, decay: float) -> float:
    """The documented schedule, written out again: linear warmup lr = peak (s + 1) / W, then the shape."""
    floor = peak * floor_ratio
    if s < warmup:
        return peak * (s + 1) / warmup
    if kind == "constant":
        return peak
    if kind == "cosine":
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - 1 - warmup)))
    first_decay = max(warmup, total - round(decay * total))
    if s < first_decay:
        return peak
    return peak - (peak - floor) * (s - first_decay + 1) / (total - first_decay)


def metric(at, start):
    return next(m for m in at.metric if m.label.startswith(start))


@pytest.mark.parametrize("params, shape, total, peak, warmup, floor, decay", [
    ({}, "cosine", 150, 3e-3, 20, 0.1, 0.2),
    ({"shape": "Warmup-stable-decay", "steps": "200", "lr": "0.01", "warmup": "40", "floor": "0", "decay": "30"},
     "wsd", 200, 0.01, 40, 0.0, 0.3),
    ({"shape": "Constant", "steps": "100", "warmup": "0"}, "constant", 100, 3e-3, 0, 0.1, 0.2),
])
def test_the_schedule_shown_is_the_formula(lm, params, shape, total, peak, warmup, floor, decay):
    at = open_page("hyperparameters", params | {"train": "false", "range": "false"})
    assert_no_exception(at)
    data = chart(at, "schedule_chart")["data"]
    assert len(data) == 3
    for trace, kind in zip(data, SHAPES):
        expected = [formula(kind, s, total, peak, warmup, floor, decay) for s in range(total)]
        np.testing.assert_allclose(plotly_array(trace["y"]), expected, rtol=1e-9, atol=1e-15)
        assert (trace["line"]["width"] > 2) == (kind == shape)
    table = at.dataframe[0].value
    assert len(table) >= 3 and table["step"].iloc[0] == 0 and table["step"].iloc[-1] == total - 1
    for step, lr in zip(table["step"], table["learning rate"]):
        assert lr == pytest.approx(formula(shape, int(step), total, peak, warmup, floor, decay), rel=1e-12)
    mine = [formula(shape, s, total, peak, warmup, floor, decay) for s in range(total)]
    assert metric(at, "Last step's rate").value == f"{mine[-1]:.3g}"
    assert metric(at, "Mean rate").value == f"{np.mean(mine):.3g}"
    assert "Switch on **Train live**" in " ".join(i.value for i in at.info)


def test_runs_share_weights_and_batches_and_the_range_test_is_read_from_its_losses(lm):
    at = open_page("hyperparameters", {"steps": "100", "batch": "4"})
    assert_no_exception(at)
    assert chart(at, "schedule_chart")            # the instant chart is there before any job has finished
    run_until(at, lambda a: any(m.label.startswith("Suggested") for m in a.metric)
              and any(m.label.endswith("validation loss") for m in a.metric), timeout=400)
    assert_no_exception(at)
    # the reader's run, recomputed here: a seed fixes it, so the numbers shown must be these
    config = RunConfig(steps=100, batch_size=4, schedule=Schedule("cosine", 3e-3, 20, 0.1, 0.2), eval_every=10)
    run = train(config)
    assert run.last.val_loss < run.evals[0].val_loss - 0.5            # a clear loss drop
    assert metric(at, "Cosine: validation loss").value == f"{run.last.val_loss:.3f}"
    runs = chart(at, "runs_chart")["data"]
    np.testing.assert_allclose(plotly_array(runs[0]["y"]), [s.loss for s in run.steps], rtol=1e-6)
    for i, kind in enumerate(("cosine", "constant", "wsd")):
        lrs = plotly_array(runs[3 * i + 2]["y"])
        np.testing.assert_allclose(lrs, [formula(kind, s, 100, 3e-3, 20, 0.1, 0.2) for s in range(100)], rtol=1e-9)
    assert "same weights and read the same batches" in " ".join(c.value for c in at.caption)

    probe = chart(at, "range_chart")["data"]
    lrs, losses = plotly_array(probe[0]["x"]), plotly_array(probe[0]["y"])
    assert lrs[0] == pytest.approx(1e-5) and np.all(np.diff(np.log(lrs)) > 0)
    avg, smooth = 0.0, []
    for t, loss in enumerate(losses, 1):
        avg = 0.9 * avg + 0.1 * loss
        smooth.append(avg / (1 - 0.9 ** t))
    np.testing.assert_allclose(plotly_array(probe[1]["y"]), smooth, rtol=1e-9)
    best = int(np.argmin(smooth))
    assert metric(at, "Lowest smoothed loss").value == f"{lrs[best]:.3g}"
    assert metric(at, "Suggested peak").value == f"{lrs[best] / 10:.3g}"
    above = [i for i in range(best, len(smooth)) if smooth[i] > losses[0]]
    cliff = metric(at, "Cliff").value
    assert cliff == (f"{lrs[above[0]]:.3g}" if above else "not reached")
    assert abs(losses[0] - math.log(load_corpus().vocab_size)) < 0.1


def test_published_table_lists_its_sources(lm):
    at = open_page("hyperparameters", {"train": "false", "range": "false"})
    table = at.dataframe[1].value
    assert set(table["model"]) >= {"GPT-3", "LLaMA-7B"}
    assert table["source"].str.contains("Brown et al. 2020|Touvron et al. 2023").all()


@pytest.mark.parametrize("params", [
    {"shape": "banana", "steps": "-1", "lr": "1e400", "warmup": "nan", "floor": "x", "decay": "999"},
    {"batch": "0", "clip": "<b>", "wd": "inf", "seed": "1e400", "train": "maybe", "range": "no"},
    {"compare": "nothing", "train": "false", "range": "false"},
])
def test_bad_links_fall_back(lm, params):
    at = open_page("hyperparameters", params | {"train": params.get("train", "false"), "range": "false"})
    assert_no_exception(at)
    assert chart(at, "schedule_chart")
