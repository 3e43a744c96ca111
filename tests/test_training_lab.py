"""The training lab: a run is fixed by its seed, schedules are their formulas, optimizers share weights and
batches, the untrained loss is ln V, and training lowers it. Step counts stay tiny to keep this fast."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.training.baby_gpt import BabyShape, build_model, parameter_count
from engine.training.corpus import load_corpus
from engine.training.lab import OPTIMIZERS, SUGGESTED_LR, RunConfig, continue_text, train, with_optimizer
from engine.training.schedules import KINDS, Schedule

TINY = RunConfig(steps=6, eval_every=3, sample_chars=12, eval_windows=8)


@pytest.fixture(scope="module")
def tiny_run():
    return train(TINY)


def test_a_seed_fixes_the_whole_run(tiny_run):
    again = train(TINY)
    assert [s.loss for s in again.steps] == [s.loss for s in tiny_run.steps]
    assert [(e.train_loss, e.val_loss) for e in again.evals] == [(e.train_loss, e.val_loss) for e in tiny_run.evals]
    assert again.sample_before == tiny_run.sample_before and again.sample_after == tiny_run.sample_after
    assert again.initial_weights_digest == tiny_run.initial_weights_digest
    other = train(replace(TINY, seed=1))
    assert other.initial_weights_digest != tiny_run.initial_weights_digest
    assert other.batches_digest != tiny_run.batches_digest
    assert other.steps[0].loss != tiny_run.steps[0].loss


def test_a_run_never_reads_or_moves_the_global_random_state():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = train(replace(TINY, dropout=0.2))
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)   # another global state: the run is the same
    assert [s.loss for s in train(replace(TINY, dropout=0.2)).steps] == [s.loss for s in first.steps]


def test_the_untrained_loss_is_near_ln_vocabulary(tiny_run):
    v = load_corpus().vocab_size
    assert tiny_run.uniform_loss == pytest.approx(math.log(v))
    start = tiny_run.evals[0]
    assert start.step == 0
    assert abs(start.val_loss - math.log(v)) < 0.1 and abs(start.train_loss - math.log(v)) < 0.1
    assert abs(tiny_run.steps[0].loss - math.log(v)) < 0.1   # the first minibatch, before any update


def test_training_lowers_the_loss():
    run = train(replace(TINY, steps=60, eval_every=30))
    assert run.evals[-1].step == 60
    assert run.evals[-1].val_loss < run.evals[0].val_loss - 0.5
    assert run.evals[-1].train_loss < run.evals[0].train_loss - 0.5
    assert run.stopped is None and len(run.steps) == 60


def test_every_optimizer_starts_from_the_same_weights_and_sees_the_same_batches(tiny_run):
    runs = {name: train(with_optimizer(TINY, name)) for name in OPTIMIZERS}
    assert {r.initial_weights_digest for r in runs.values()} == {tiny_run.initial_weights_digest}
    assert {r.batches_digest for r in runs.values()} == {tiny_run.batches_digest}
    # The first minibatch loss is taken before any update: the same weights on the same batch.
    assert len({r.steps[0].loss for r in runs.values()}) == 1
    assert len({r.steps[-1].loss for r in runs.values()}) == len(OPTIMIZERS)   # then they part ways
    warmup = min(TINY.schedule.warmup_steps, TINY.steps)   # a warmup longer than the run spans the run
    assert runs["sgd"].steps[0].lr == pytest.approx(SUGGESTED_LR["sgd"] / warmup)


def test_the_schedule_sets_each_steps_learning_rate(tiny_run):
    expected = TINY.schedule.curve(TINY.steps)
    np.testing.assert_allclose([s.lr for s in tiny_run.steps], expected)


def test_clipping_is_reported_and_applied():
    run = train(replace(TINY, clip_norm=0.05))
    assert all(s.clipped == (s.grad_norm > 0.05) for s in run.steps) and any(s.clipped for s in run.steps)
    free = train(replace(TINY, clip_norm=0.0))
    assert not any(s.clipped for s in free.steps)
    assert free.steps[0].grad_norm == pytest.approx(run.steps[0].grad_norm, rel=1e-6)   # same first gradient
    assert free.steps[-1].loss != run.steps[-1].loss


def test_dropout_changes_training_but_not_evaluation():
    drop = train(replace(TINY, dropout=0.3))
    plain = train(TINY)
    assert drop.evals[0] == plain.evals[0]            # evaluation runs without dropout, from the same weights
    assert drop.steps[0].loss != plain.steps[0].loss  # training passes drop activations


def test_a_diverging_run_stops_and_says_so():
    run = train(replace(with_optimizer(TINY, "sgd", 500.0), clip_norm=0.0, steps=40, eval_every=40))
    assert run.stopped == "diverged" and len(run.steps) < 40
    assert not math.isfinite(run.steps[-1].loss)


def test_a_stop_request_ends_the_run_with_what_it_has():
    calls = []
    run = train(replace(TINY, steps=50), on_step=calls.append, should_stop=lambda: len(calls) >= 4)
    assert run.stopped == "stopped" and len(run.steps) == 4 and run.evals[-1].step == 4


def test_weights_can_be_traced_for_paths():
    run = train(replace(TINY, track_weights_every=3))
    assert [step for step, _ in run.weight_trace] == [0, 3, 6]
    assert all(w.size == run.parameters for _, w in run.weight_trace)
    assert not np.array_equal(run.weight_trace[0][1], run.weight_trace[-1][1])


def test_training_works_inside_inference_mode():
    """Jobs may be started from code that runs under torch.inference_mode (the gate's model_work)."""
    with torch.inference_mode():
        run = train(replace(TINY, steps=2, eval_every=2))
    assert len(run.steps) == 2 and math.isfinite(run.steps[-1].loss)


def test_the_trained_model_can_be_sampled_again(tiny_run):
    text = continue_text(tiny_run, "The fox", 15, temperature=0.8, seed=3)
    assert len(text) == 15 and text == continue_text(tiny_run, "The fox", 15, temperature=0.8, seed=3)
    assert set(text) <= set(tiny_run.alphabet)


def test_the_parameter_count_matches_the_shape():
    shape = BabyShape()
    v, d, h, kv, f = load_corpus().vocab_size, shape.d_model, shape.heads, shape.kv_heads, shape.ffn
    per_block = d * d + 2 * d * (d // h * kv) + d * d + 3 * d * f + 2 * d   # q, k, v, o, SwiGLU, two norm gains
    assert parameter_count(build_model(shape, v, 0)) == v * d + shape.layers * per_block + d   # tied embedding


def test_the_corpus_splits_and_round_trips():
    corpus = load_corpus()
    train_ids, val_ids = corpus.split(0.9)
    assert len(train_ids) + len(val_ids) == len(corpus.text)
    assert corpus.decode(corpus.encode(corpus.text[:500])) == corpus.text[:500]
    assert corpus.known("Zebra 🦓 ~ fox") == "".join(c for c in "Zebra 🦓 ~ fox" if c in corpus.alphabet)


def test_bad_configurations_are_refused():
    for bad in (dict(optimizer="lion"), dict(steps=0), dict(dropout=1.0), dict(batch_size=10_000)):
        with pytest.raises(ValueError):
            RunConfig(**bad)
    with pytest.raises(ValueError):
        BabyShape(d_model=60, heads=8)


# --- schedules: each kind equals its formula, written out again here --------------------------------------

def reference(kind: str, s: int, n: int, peak=1e-2, warmup=10, ratio=0.1, decay=0.3) -> float:
    floor = peak * ratio
    if kind == "exponential":
        return floor * (peak / floor) ** (s / (n - 1))
    if s < warmup:
        return peak * (s + 1) / warmup
    if kind == "constant":
        return peak
    if kind == "cosine":
        return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * (s - warmup) / (n - 1 - warmup)))
    start = n - round(decay * n)
    return peak if s < start else peak - (peak - floor) * (s - start + 1) / (n - start)


@pytest.mark.parametrize("kind", KINDS)
def test_schedules_equal_their_formulas(kind):
    n = 100
    schedule = Schedule(kind, peak_lr=1e-2, warmup_steps=10, min_lr_ratio=0.1, decay_fraction=0.3)
    np.testing.assert_allclose(schedule.curve(n), [reference(kind, s, n) for s in range(n)], rtol=1e-12)


def test_schedule_landmarks():
    n = 100
    cosine = Schedule("cosine", 1e-2, 10, 0.1).curve(n)
    assert cosine[9] == pytest.approx(1e-2) and cosine[-1] == pytest.approx(1e-3) and cosine.max() == pytest.approx(1e-2)
    assert np.all(np.diff(cosine[9:]) <= 1e-15)                       # never rises after the warmup
    wsd = Schedule("wsd", 1e-2, 10, 0.0, 0.2).curve(n)
    assert np.all(wsd[9:80] == 1e-2) and wsd[-1] == 0.0               # stable, then down to the floor
    ramp = Schedule("exponential", 1.0, 0, 1e-4).curve(n)
    assert ramp[0] == pytest.approx(1e-4) and ramp[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(ramp[1:] / ramp[:-1], ramp[1] / ramp[0])   # the same factor every step
    assert Schedule("constant", 3e-3, 0).curve(5).tolist() == [3e-3] * 5


def test_bad_schedules_are_refused():
    for bad in (dict(kind="step"), dict(peak_lr=0.0), dict(peak_lr=float("nan")), dict(min_lr_ratio=2.0),
                dict(kind="exponential", min_lr_ratio=0.0)):
        with pytest.raises(ValueError):
            Schedule(**bad)
    with pytest.raises(ValueError):
        Schedule().lr_at(5, 5)


def test_the_figures_the_prose_states():
    """pretraining.md: 58 characters (ln 58 = 4.06), 16 windows of 64 characters per step."""
    assert load_corpus().vocab_size == 58 and round(math.log(58), 2) == 4.06
    assert (RunConfig().batch_size, RunConfig().shape.context) == (16, 64)
