"""The optimizers page: the 2-D paths shown are the engine's torch.optim paths; the race's four runs start from
the same weights and read the same batches (identical step-0 loss, equal digests, recomputed independently);
with no weight decay AdamW's run is Adam's; the optimizer-state sizes are read from the live model."""
from dataclasses import replace

import numpy as np
import pytest

from engine.training.lab import OPTIMIZER_NAMES, OPTIMIZERS, RunConfig, train
from engine.training.optimizer_race import SURFACES, race_configs, surface_path
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text
from ui.text import human_bytes

QUIET = {"train": "false"}
SHORT = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam", "adamw": "AdamW"}


def metric(at, label_start):
    return next(m for m in at.metric if m.label.startswith(label_start))


def test_surface_paths_are_the_engines_and_state_sizes_come_from_the_model(lm):
    at = open_page("optimizers", QUIET)
    assert_no_exception(at)
    traces = chart(at, "surfaces")["data"]
    for surface in SURFACES:
        for name in OPTIMIZERS:
            expected = surface_path(surface, name, 150, weight_decay=0.1).points
            drawn = [t for t in traces if t.get("name") == OPTIMIZER_NAMES[name]][list(SURFACES).index(surface)]
            np.testing.assert_allclose(plotly_array(drawn["x"]), expected[:, 0], rtol=1e-9)
            np.testing.assert_allclose(plotly_array(drawn["y"]), expected[:, 1], rtol=1e-9)
    ravine = {o: surface_path("ravine", o, 150, weight_decay=0.1) for o in OPTIMIZERS}
    best = min(ravine, key=lambda o: ravine[o].final_distance)
    shown = metric(at, "Closest: ravine")
    assert shown.value == SHORT[best] and f"{ravine[best].final_distance:.3f} away" in shown.proto.delta
    for name, floats in {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}.items():
        assert metric(at, f"{SHORT[name]}: state").value == human_bytes(4 * floats * lm.card.parameters)
    assert "Switch on **Train them live**" in shown_text(at)


def test_the_race_starts_all_four_from_the_same_weights_and_batches(lm):
    params = {"race_steps": "50", "wd": "0", "noise": "0.5", "seed": "7", "steps": "60"}
    at = open_page("optimizers", params)
    assert_no_exception(at)
    assert at.slider(key="steps").value == 60 and at.select_slider(key="noise").value == "0.5"
    noisy = surface_path("bumpy", "momentum", 60, noise=0.5, seed=7)
    drawn = [t for t in chart(at, "surfaces")["data"] if t.get("name") == OPTIMIZER_NAMES["momentum"]][2]
    np.testing.assert_allclose(plotly_array(drawn["x"]), noisy.points[:, 0], rtol=1e-9)
    run_until(at, lambda a: any(c.proto.id.endswith("-race") for c in a.get("plotly_chart")), timeout=400)
    assert_no_exception(at)

    # the check: identical first loss and equal digests, recomputed from a fresh one-step run
    fresh = train(replace(RunConfig(seed=0, steps=1, weight_decay=0.0), optimizer="sgd"))
    firsts = [metric(at, f"{SHORT[o]}: loss").proto.delta for o in OPTIMIZERS]
    assert all(d.endswith(f"from {fresh.first_loss:.3f} at step 0") for d in firsts)
    table = next(d.value for d in at.dataframe if "batches digest" in d.value.columns)
    assert list(table["optimizer"]) == [OPTIMIZER_NAMES[o] for o in OPTIMIZERS]
    assert set(table["initial weights digest"]) == {fresh.initial_weights_digest}
    assert table["batches digest"].nunique() == 1
    assert set(table["loss at step 0"]) == {round(fresh.first_loss, 4)}
    assert any(fresh.initial_weights_digest in s.value for s in at.success)
    assert list(table["peak rate"]) == pytest.approx([c.schedule.peak_lr for c in race_configs(RunConfig())])

    curves = chart(at, "race")["data"]
    val = {t["name"]: plotly_array(t["y"]) for t in curves if not t["name"].endswith("minibatch")}
    np.testing.assert_array_equal(val["Adam"], val["AdamW"])   # λ = 0: AdamW's update is Adam's
    assert all(v[-1] < v[0] for v in val.values())              # every optimizer learned something in 50 steps
    paths = chart(at, "paths")["data"]
    assert [t["name"] for t in paths[:4]] == [OPTIMIZER_NAMES[o] for o in OPTIMIZERS]
    for t in paths[:4]:
        assert plotly_array(t["x"])[0] == pytest.approx(0, abs=1e-9) and len(plotly_array(t["x"])) == 26
    assert len(val["SGD"]) == 11                                 # evaluated every 5 of the 50 steps


@pytest.mark.parametrize("params", [
    {"steps": "9999", "rate": "×100", "noise": "-1", "wd": "banana", "seed": "1e400"},
    {"race_steps": "7", "race_rate": "lots", "race_seed": "-5"},
    {"steps": "<script>", "noise": "1", "seed": "nan", "train": "false"},
])
def test_odd_links_fall_back_without_a_traceback(lm, params):
    at = open_page("optimizers", QUIET | params)
    assert_no_exception(at)
    assert chart(at, "surfaces")["data"]
