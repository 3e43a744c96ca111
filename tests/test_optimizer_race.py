"""The optimizers' engine: 2-D paths made by the lab's own torch.optim updates (checked against the textbook
formulas), the PCA of weight snapshots, and a short race whose four runs share weights and batches."""
import numpy as np
import pytest
import torch

from charts.optimizers import race_curves, surface_paths, weight_paths as weight_paths_chart
from engine.training.lab import OPTIMIZERS, SUGGESTED_LR, RunConfig
from engine.training.optimizer_race import SURFACES, race, race_configs, surface_path, weight_paths


def gradient(surface, xy):
    point = torch.tensor(xy, dtype=torch.float64, requires_grad=True)
    SURFACES[surface].loss(point).backward()
    return point.grad.numpy()


@pytest.mark.parametrize("surface", list(SURFACES))
def test_first_steps_follow_the_textbook_updates(surface):
    spec = SURFACES[surface]
    start = np.array(spec.start)
    g = gradient(surface, spec.start)
    sgd = surface_path(surface, "sgd", 1)
    np.testing.assert_allclose(sgd.points[1], start - spec.lr["sgd"] * g, rtol=1e-12)
    adam = surface_path(surface, "adam", 1)   # m̂ = g, v̂ = g²: a step of lr in the direction of -sign(g)
    np.testing.assert_allclose(adam.points[1], start - spec.lr["adam"] * g / (np.abs(g) + 1e-8), rtol=1e-9)
    # momentum: the second step adds 0.9 of the first one's velocity
    mom = surface_path(surface, "momentum", 2)
    g1 = gradient(surface, tuple(mom.points[1]))
    np.testing.assert_allclose(mom.points[2], mom.points[1] - spec.lr["momentum"] * (0.9 * g + g1), rtol=1e-9)


def test_adamw_decays_the_weights_directly_and_equals_adam_without_decay():
    a, w = surface_path("ravine", "adam", 40), surface_path("ravine", "adamw", 40)
    np.testing.assert_allclose(a.points, w.points)
    spec, lam = SURFACES["ravine"], 0.1
    g = gradient("ravine", spec.start)
    start, lr = np.array(spec.start), spec.lr["adamw"]
    step = surface_path("ravine", "adamw", 1, weight_decay=lam).points[1]
    np.testing.assert_allclose(step, start * (1 - lr * lam) - lr * g / (np.abs(g) + 1e-8), rtol=1e-9)
    coupled = surface_path("ravine", "adam", 1, weight_decay=lam).points[1]
    g_l2 = g + lam * start            # Adam's L2: the decay goes into the gradient and is normalised with it
    np.testing.assert_allclose(coupled, start - lr * g_l2 / (np.abs(g_l2) + 1e-8), rtol=1e-9)


def test_the_default_rates_make_progress_and_noise_is_seeded():
    for surface in SURFACES:
        for name in OPTIMIZERS:
            path = surface_path(surface, name, 150)
            assert np.all(np.isfinite(path.losses)) and path.losses[-1] < path.losses[0] / 2, (surface, name)
    noisy = surface_path("rosenbrock", "sgd", 30, noise=0.5, seed=3)
    longer = surface_path("rosenbrock", "sgd", 80, noise=0.5, seed=3).first(30)   # a prefix is the shorter walk
    np.testing.assert_array_equal(longer.points, noisy.points)
    np.testing.assert_array_equal(longer.losses, noisy.losses)
    assert np.array_equal(noisy.points, surface_path("rosenbrock", "sgd", 30, noise=0.5, seed=3).points)
    assert not np.allclose(noisy.points, surface_path("rosenbrock", "sgd", 30, noise=0.5, seed=4).points)
    assert not np.allclose(noisy.points, surface_path("rosenbrock", "sgd", 30).points)


def test_sgd_at_three_times_its_rate_leaves_rosenbrock_and_the_panel_keeps_its_range():
    path = surface_path("rosenbrock", "sgd", 100, lr_factor=3)
    assert path.losses.max() > 1e6 and np.all(np.abs(path.points) <= 1e3)
    spec = SURFACES["rosenbrock"]
    xs, ys, zz = spec.grid(20)
    fig = surface_paths([dict(title="r", xs=xs, ys=ys, zz=zz, start=spec.start, minimum=spec.minimum,
                              paths={"sgd": path.points})], {"sgd": "SGD"})
    assert len(fig.data[1].x) == len(path.points)
    assert tuple(fig.layout.xaxis.range) == spec.x_range and tuple(fig.layout.yaxis.range) == spec.y_range


def test_weight_paths_project_on_the_main_directions():
    rng = np.random.default_rng(0)
    start = rng.normal(size=50)
    d1, d2 = np.eye(50)[3], np.eye(50)[7]
    run_a = [(s, start + s * d1) for s in range(5)]
    run_b = [(s, start + 0.5 * s * d2) for s in range(5)]
    paths = weight_paths([run_a, run_b])
    np.testing.assert_allclose(np.abs(paths.coords[0][:, 0]), np.arange(5), atol=1e-9)
    np.testing.assert_allclose(np.abs(paths.coords[1][:, 1]), 0.5 * np.arange(5), atol=1e-9)
    np.testing.assert_allclose(paths.explained, [0.8, 0.2], atol=1e-9)   # 4x the spread along d1
    assert paths.steps == (tuple(range(5)), tuple(range(5)))
    fig = weight_paths_chart(["A", "B"], ["sgd", "adam"], paths.steps, paths.coords, paths.explained)
    assert "80%" in fig.layout.xaxis.title.text


def test_a_short_race_shares_weights_and_batches():
    configs = race_configs(RunConfig(steps=6, eval_every=3), lr_factor=0.3)
    assert [c.optimizer for c in configs] == list(OPTIMIZERS)
    assert [c.schedule.peak_lr for c in configs] == pytest.approx([SUGGESTED_LR[o] * 0.3 for o in OPTIMIZERS])
    seen = []
    result = race(configs, on_step=lambda i, r: seen.append((i, r.step)))
    assert seen == [(i, s) for i in range(4) for s in range(1, 7)]
    assert result.same_start and result.same_batches
    assert len({r.first_loss for r in result.runs}) == 1
    assert len({tuple(s.loss for s in r.steps[:1]) for r in result.runs}) == 1   # same first batch, same weights
    assert all(r.weight_trace == () and r.final_weights == {} for r in result.runs)
    assert [len(c) for c in result.paths.coords] == [7] * 4 and np.allclose(result.paths.coords[0][0], 0)
    fig = race_curves(["a"] * 4, list(OPTIMIZERS), [[s.step for s in r.steps] for r in result.runs],
                      [[s.loss for s in r.steps] for r in result.runs], [[e.step for e in r.evals] for r in result.runs],
                      [[e.val_loss for e in r.evals] for r in result.runs], 4.0)
    assert len(fig.data) == 8
