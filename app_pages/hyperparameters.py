import math
from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from charts.hyperparameters import range_test, schedule_curves, schedule_runs
from engine.training.corpus import load_corpus
from engine.training.lab import RunConfig
from engine.training.lr_range import SHAPES, range_test_config, read_range_test, shape_variants
from engine.training.recipes import PUBLISHED_RECIPES
from engine.training.schedules import KIND_NAMES, Schedule
from ui import concept_page
from ui.charts import figure, show_chart
from ui.inputs import whole_number_input
from ui.layout import metric_row
from ui.training import follow_training, training_job

STEPS = [100, 150, 200, 300, 400]
PEAKS = ["0.0003", "0.001", "0.003", "0.01", "0.03", "0.1"]
WARMUPS = [0, 5, 10, 20, 40, 80]
FLOORS = [0, 1, 10, 30, 100]           # the minimum rate, in % of the peak
DECAYS = [10, 20, 30, 50]              # WSD: % of the run spent decaying
BATCHES = [4, 8, 16, 32, 64]
CLIPS = ["off", "0.25", "1", "5"]
WEIGHT_DECAYS = ["0", "0.01", "0.1", "0.3"]
SHORT = {"constant": "Constant", "cosine": "Warmup + cosine", "wsd": "Warmup-stable-decay"}
TINY = {"constant": "Constant", "cosine": "Cosine", "wsd": "WSD"}   # for metric labels, which must stay short
RANGE_STEPS, RANGE_LOW, RANGE_HIGH = 100, 1e-5, 10.0


def pick(value, options, default):
    return value if value in options else default


def sampled_steps(schedule: Schedule, total: int) -> list[int]:
    """The steps where a schedule changes character: start, end of warmup, middle, start of the decay, end."""
    warmup = min(schedule.warmup_steps, total)
    marks = {0, max(warmup - 1, 0), min(warmup, total - 1), total // 2, total - 1}
    if schedule.kind == "wsd":
        marks.add(max(warmup, total - round(schedule.decay_fraction * total)))
    return sorted(m for m in marks if 0 <= m < total)


with concept_page("hyperparameters"):
    st.subheader("1 · Design a learning-rate schedule", anchor=False)
    shape = pick(st.segmented_control("Shape", list(SHAPES), format_func=SHORT.get, default="cosine", key="shape",
                                      bind="query-params", help="The curve the peak rate follows after warmup."),
                 SHAPES, "cosine")
    c2, c3, c4 = st.columns(3)
    steps = int(pick(c2.select_slider("Steps", STEPS, value=150, key="steps", bind="query-params",
                                      help="Optimizer steps of the run; the schedule is stretched to fit them."),
                     STEPS, 150))
    peak = float(pick(c3.select_slider("Peak learning rate", PEAKS, value="0.003", key="lr", bind="query-params",
                                       help="The highest rate, reached at the end of the warmup (AdamW)."),
                      PEAKS, "0.003"))
    warmup = int(pick(c4.select_slider("Warmup steps", WARMUPS, value=20, key="warmup", bind="query-params",
                                       help="The rate climbs in a straight line from peak/W to the peak over the "
                                            "first W steps."), WARMUPS, 20))
    c5, c6, _ = st.columns(3)
    floor = int(pick(c5.select_slider("Minimum rate (% of peak)", FLOORS, value=10, key="floor", bind="query-params",
                                      help="Where the cosine and the WSD decay end. GPT-3 and LLaMA used 10%."),
                     FLOORS, 10))
    decay = int(pick(c6.select_slider("WSD decay (% of the run)", DECAYS, value=20, key="decay", bind="query-params",
                                      help="Warmup-stable-decay only: the last part of the run, during which the "
                                           "rate falls in a straight line to the minimum."), DECAYS, 20))
    schedule = Schedule(shape, peak, warmup, floor / 100, decay / 100)
    variants = shape_variants(schedule)
    curves = {kind: s.curve(steps) for kind, s in variants.items()}
    mine = curves[shape]
    a, b, c = metric_row(3)
    a.metric("Peak rate", f"{peak:g}", f"reached at step {min(warmup, steps) - 1 if warmup else 0}",
             delta_color="off", delta_arrow="off")
    b.metric("Last step's rate", f"{mine[-1]:.3g}", f"{mine[-1] / peak:.0%} of the peak", delta_color="off",
             delta_arrow="off")
    c.metric("Mean rate over the run", f"{mine.mean():.3g}", f"{mine.mean() / peak:.0%} of the peak",
             delta_color="off", delta_arrow="off",
             help="The sum of the rates is the total distance the schedule lets the weights travel; the mean is "
                  "that sum per step.")
    names = [KIND_NAMES[k] for k in SHAPES]
    show_chart(figure(schedule_curves, names, list(SHAPES), [curves[k].tolist() for k in SHAPES], shape,
                      title=f"Learning rate at every step of a {steps}-step run (yours thick)"),
               partial(pd.DataFrame, {"step": range(steps), **{k: curves[k] for k in SHAPES}}),
               name="lr-schedules", key="schedule_chart")
    marks = sampled_steps(schedule, steps)
    st.dataframe(pd.DataFrame({"step": marks, "learning rate": [float(mine[s]) for s in marks],
                               "% of peak": [round(100 * float(mine[s]) / peak, 2) for s in marks]}),
                 hide_index=True, key="schedule_table", column_config={
                     "learning rate": st.column_config.NumberColumn(format="%.6g")})
    st.caption("Steps count from 0. These are the rates the runs below use, step by step: the same function "
               "draws the chart and sets the optimizer's rate during training.")

    st.subheader("2 · Train the baby GPT with it", anchor=False)
    st.markdown("The training lab's baby GPT (two blocks, about 0.1 M parameters, a character vocabulary) trains "
                "from the **same initial weights on the same batches** once per schedule, so the curves differ only "
                "by the schedule. Batch size, clipping and weight decay apply to every run.")
    compare = st.multiselect("Shapes to train (yours always included)", list(SHAPES), default=list(SHAPES),
                             format_func=SHORT.get, key="compare", bind="query-params",
                             help="Other shapes run with the same peak, warmup and minimum, overlaid on yours.")
    d1, d2, d3, d4 = st.columns(4)
    batch = int(pick(d1.select_slider("Batch (windows)", BATCHES, value=16, key="batch", bind="query-params",
                                      help="Windows of 64 characters per step. A bigger batch gives a less noisy "
                                           "gradient but costs more per step."), BATCHES, 16))
    clip = pick(d2.select_slider("Gradient clipping", CLIPS, value="1", key="clip", bind="query-params",
                                 help="The gradient's overall length is cut to this before each step. GPT-3 and "
                                      "LLaMA clipped at 1.0."), CLIPS, "1")
    wd = float(pick(d3.select_slider("Weight decay", WEIGHT_DECAYS, value="0.1", key="wd", bind="query-params",
                                     help="AdamW shrinks every weight matrix by lr × decay each step."),
                    WEIGHT_DECAYS, "0.1"))
    seed = whole_number_input("Seed", 0, 1_000_000, 0, "seed", container=d4,
                              help="Fixes the initial weights and the batches of every run.")
    base = RunConfig(seed=seed, steps=steps, batch_size=batch, clip_norm=0.0 if clip == "off" else float(clip),
                     weight_decay=wd, schedule=schedule, eval_every=max(5, steps // 10))
    kinds = [shape] + [k for k in SHAPES if k in compare and k != shape]
    configs = [replace(base, schedule=variants[k]) for k in kinds]
    corpus = load_corpus()
    runs = None
    if not st.toggle("Train live", value=True, key="train", bind="query-params",
                     help="Each run takes a few seconds on this shared CPU; results are kept for the share link."):
        st.info("Switch on **Train live** to train the baby GPT with these schedules.", icon=":material/model_training:")
    else:
        runs = []
        for kind, cfg in zip(kinds, configs):
            job = training_job(cfg)
            if not job.finished:   # name each live curve while its run is going
                st.markdown(f"**{SHORT[kind]}** run")
            runs.append(follow_training(job, corpus.uniform_loss, chart_key=f"run_{kind}"))
    if runs and all(r is not None for r in runs):
        for col, kind, run in zip(metric_row(len(runs)), kinds, runs):
            clipped = sum(s.clipped for s in run.steps)
            col.metric(f"{TINY[kind]}: validation loss", f"{run.last.val_loss:.3f}",
                       f"{clipped} of {len(run.steps)} steps clipped", delta_color="off", delta_arrow="off",
                       help=f"After {run.last.step} steps, on fables the model never trains on (step 0: "
                            f"{run.first_loss:.3f}). Clipped steps had a gradient longer than the clipping limit.")
        for kind, run in zip(kinds, runs):
            if run.stopped:
                st.warning(f"{SHORT[kind]}: {run.stopped} after {len(run.steps)} steps"
                           + (" (the loss became infinite: the rate is too high for these settings)."
                              if run.stopped == "diverged" else "."), icon=":material/warning:")
        show_chart(figure(schedule_runs, [SHORT[k] for k in kinds], kinds, [[s.step for s in r.steps] for r in runs],
                          [[s.lr for s in r.steps] for r in runs], [[s.loss for s in r.steps] for r in runs],
                          [[e.step for e in r.evals] for r in runs], [[e.val_loss for e in r.evals] for r in runs],
                          corpus.uniform_loss, title="Validation loss (thick), each step's loss (faint), and the rate"),
                   partial(pd.DataFrame, [{"schedule": k, "step": s.step, "learning_rate": s.lr, "minibatch_loss": s.loss,
                                           "gradient_norm": s.grad_norm, "clipped": s.clipped}
                                          for k, r in zip(kinds, runs) for s in r.steps]),
                   name="schedule-runs", key="runs_chart")
        same = len({r.initial_weights_digest for r in runs}) == 1 and len({r.batches_digest for r in runs}) == 1
        best = min(zip(kinds, runs), key=lambda kr: kr[1].last.val_loss)
        st.caption(("Every run started from the same weights and read the same batches (checked by their digests). "
                    if same else "") + f"Lowest validation loss here: **{SHORT[best[0]]}** ({best[1].last.val_loss:.3f}). "
                   "A decay pays off only once the peak has done most of its work: the falling rate lets the weights "
                   "settle, but in a short run decaying early also gives up progress. Try more steps, or a higher "
                   "peak, and watch the order change.")

    st.subheader("3 · Find a good peak rate: the range test", anchor=False)
    st.markdown(f"One run of {RANGE_STEPS} steps whose rate grows by the same factor every step, from "
                f"{RANGE_LOW:g} to {RANGE_HIGH:g}, with the batch, clipping and weight decay above. The loss "
                "barely moves at first, falls fastest somewhere in the middle, then turns and climbs: past that "
                "point each step overshoots.")
    probe = range_test_config(replace(base, schedule=Schedule()), RANGE_STEPS, RANGE_LOW, RANGE_HIGH)
    probe_run = None
    if st.toggle("Run the range test", value=True, key="range", bind="query-params",
                 help="A few seconds on this shared CPU."):
        probe_run = follow_training(training_job(probe), corpus.uniform_loss, chart_key="range_run")
    else:
        st.info("Switch on **Run the range test** to sweep the learning rate.", icon=":material/speed:")
    if probe_run is not None and not (probe_run.steps and math.isfinite(probe_run.steps[0].loss)):
        st.info("The range test ended before its first step (stopped, or out of time on a busy server). Switch it "
                "off and on to try again.", icon=":material/stop_circle:")
    elif probe_run is not None:
        lrs, losses = [s.lr for s in probe_run.steps], [s.loss for s in probe_run.steps]
        reading = read_range_test(lrs, losses)
        a, b, c = metric_row(3)
        a.metric("Lowest smoothed loss at rate", f"{reading.best_lr:.3g}", f"loss {reading.best_loss:.3f}",
                 delta_color="off", delta_arrow="off", help=f"Step {reading.best_step + 1} of the sweep.")
        b.metric("Cliff: back above the first loss at", f"{reading.cliff_lr:.3g}" if reading.cliff_lr else "not reached",
                 "the run has undone its learning" if reading.cliff_lr else f"within {RANGE_HIGH:g}",
                 delta_color="off", delta_arrow="off")
        c.metric("Suggested peak rate", f"{reading.suggested_peak:.3g}", "a tenth of the minimum's rate",
                 delta_color="off", delta_arrow="off",
                 help="The rule of thumb of fastai's learning-rate finder: the minimum sits at a rate already too "
                      "high to train with for long, so start about 10 times lower.")
        cliff_loss = float(reading.smooth[reading.cliff_step]) if reading.cliff_step is not None else None
        show_chart(figure(range_test, lrs, losses, reading.smooth.tolist(), losses[0], reading.best_lr,
                          reading.best_loss, reading.cliff_lr, cliff_loss,
                          title="Loss while the learning rate grows exponentially"),
                   partial(pd.DataFrame, {"step": range(1, len(lrs) + 1), "learning_rate": lrs,
                                          "minibatch_loss": losses, "smoothed_loss": reading.smooth}),
                   name="lr-range-test", key="range_chart")
        st.caption("Smoothed with a moving average (0.9 on the past) because each step's batch is different. A "
                   "caveat the test cannot avoid: the rate and the time spent training grow together, so late, high "
                   "rates meet a model that has already learned a little. Check the suggestion by setting it as the "
                   "peak above. The rates named here hold for this model and batch only.")

    st.subheader("4 · What real models used", anchor=False)
    st.dataframe(pd.DataFrame([{"model": r.model, "parameters": r.parameters, "peak rate": f"{r.peak_lr:.1e}",
                                "batch (tokens)": r.batch_tokens, "warmup": r.warmup, "schedule": r.schedule,
                                "betas · decay · clip": f"{r.betas[0]}/{r.betas[1]} · {r.weight_decay} · {r.clip_norm}",
                                "source": r.source} for r in PUBLISHED_RECIPES]),
                 hide_index=True, width="stretch", key="recipes")
    st.caption("Typed in from the papers named in the last column. Bigger models take smaller peak rates and "
               "bigger batches, while Adam's betas (0.9, 0.95), weight decay 0.1 and clipping at 1.0 stay put. The "
               "baby GPT trains at a peak several times higher (0.003 by default): it is a thousand times smaller "
               "than GPT-3 Small and reads characters.")
