"""The training lab on a page: baby-GPT runs as jobs with a live loss curve, their results, and cached real
gradient work on SmolLM2 (one step on a private copy of its last block, gradient norms per layer, a
loss-surface slice).

A run is a job keyed by its RunConfig (engine.runtime.jobs): a rerun or a second reader with the same settings joins
it, and its finished result is kept in the registry's bounded store, so a share link shows the run at once.
While it runs, every step it reports is kept in a small bounded store here, which the polling fragment draws
as the loss curve grows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.training import training_curves
from engine.runtime.bounded import BoundedLRU
from engine.runtime.jobs import Job, JobState, job_registry
from engine.training.baby_gpt import BabyShape, build_model, parameter_count
from engine.training.corpus import load_corpus
from engine.training.lab import EvalPoint, RunConfig, RunResult, StepReport, train
from engine.training.smollm_step import GradientSteps, LayerGradients, LossSlice, gradient_steps, layer_gradients, \
    loss_slice
from ui.charts import figure, show_chart
from ui.layout import metric_row
from ui.loss import ids_of
from ui.models import lm

RUN_BUDGET_S = 90        # a run ends here whatever its step count, so one reader cannot hold a core for minutes
POLL_S = 0.7
LIVE_RUNS = 16           # partial curves kept while their runs are going
SURFACE_ALPHAS = np.round(np.linspace(-0.1, 0.4, 41), 4)
SURFACE_GRID_ALPHAS = np.round(np.linspace(-0.1, 0.4, 13), 4)
SURFACE_GRID_BETAS = np.round(np.linspace(-0.25, 0.25, 11), 4)


@dataclass
class LiveCurve:
    steps: list[StepReport] = field(default_factory=list)
    evals: list[EvalPoint] = field(default_factory=list)


class _LiveStore(BoundedLRU):
    """Partial curves of running jobs, by job key; bounded, oldest dropped first."""

    def __init__(self):
        super().__init__(LIVE_RUNS)

    def start(self, key) -> LiveCurve:
        curve = LiveCurve()
        self.put(key, curve)
        return curve


@st.cache_resource(show_spinner=False)
def _live_store() -> _LiveStore:
    return _LiveStore()


def training_job(config: RunConfig, budget_s: float = RUN_BUDGET_S, again: bool = False) -> Job:
    """The run for these settings: running, stored, or started now."""
    key = ("baby-gpt", config)
    store = _live_store()

    def work(ctx) -> RunResult:
        curve = store.start(key)

        def on_step(report: StepReport) -> None:
            curve.steps.append(report)
            ctx.report(report.step / config.steps,
                       f"Step {report.step:,} of {config.steps:,} · minibatch loss {report.loss:.3f} · "
                       f"learning rate {report.lr:.2g} · {report.elapsed_s:.1f} s")

        return train(config, on_step=on_step, should_stop=ctx.should_stop, on_eval=curve.evals.append)

    return job_registry().submit(key, work, title="baby GPT training", budget_s=budget_s, fresh=again)


def follow_training(job: Job, uniform: float, *, chart_key: str) -> RunResult | None:
    """The finished run, else None after drawing its progress and its curve so far (both redrawn while it runs)."""
    if job.state is JobState.DONE:
        return job.result
    if job.state is JobState.FAILED:
        st.error(f"The training run stopped with an error: {job.error}", icon=":material/error:")
        return None
    _progress(job.key, uniform, chart_key)
    return None


@st.fragment(run_every=POLL_S)
def _progress(key, uniform: float, chart_key: str) -> None:
    job = job_registry().get(key)
    if job is None or job.finished:
        st.rerun(scope="app")
        return
    if job.state is JobState.QUEUED:
        ahead = job_registry().jobs_ahead(job)
        st.progress(0.0, text=f"Queued: {ahead} job(s) ahead of this run. It starts as soon as the server is free."
                    if ahead else "Building the baby GPT...")
    else:
        st.progress(job.fraction, text=job.message or "Building the baby GPT...")
    st.button("Stop here", key=f"stop-{chart_key}", icon=":material/stop_circle:", on_click=job.request_stop,
              disabled=job.stop_requested, help="Ends the run at its next step and shows what it learned so far.")
    st.caption(f"Training runs on the server, one optimizer step at a time (budget {job.budget_s:.0f} s). You may "
               "move on and come back; a reader who opens the same link joins this run.")
    curve = _live_store().get(key)
    if curve and curve.steps:
        steps, evals = list(curve.steps), list(curve.evals)
        show_chart(training_curves([s.step for s in steps], [s.loss for s in steps], [e.step for e in evals],
                                   [e.train_loss for e in evals], [e.val_loss for e in evals], uniform,
                                   title="The loss so far (live)"),
                   partial(pd.DataFrame, {"step": [s.step for s in steps], "minibatch_loss": [s.loss for s in steps],
                                          "learning_rate": [s.lr for s in steps]}),
                   name="baby-gpt-live-loss", key=f"{chart_key}-live")


def baby_parameters(shape: BabyShape) -> int:
    """Parameters of a baby GPT of this shape, counted on a freshly built one."""
    return _baby_parameters(shape.layers, shape.d_model, shape.heads, shape.kv_heads, shape.context, shape.ffn)


@st.cache_data(max_entries=16, show_spinner=False)
def _baby_parameters(layers: int, d_model: int, heads: int, kv_heads: int, context: int, ffn: int) -> int:
    shape = BabyShape(layers=layers, d_model=d_model, heads=heads, kv_heads=kv_heads, context=context, ffn_dim=ffn)
    return parameter_count(build_model(shape, load_corpus().vocab_size, 0))


def run_table(run: RunResult) -> pd.DataFrame:
    """Every step of a run, with the evaluations on the steps that had one."""
    evals = {e.step: e for e in run.evals}
    return pd.DataFrame({
        "step": [s.step for s in run.steps], "learning_rate": [s.lr for s in run.steps],
        "minibatch_loss": [s.loss for s in run.steps], "gradient_norm_before_clipping": [s.grad_norm for s in run.steps],
        "clipped": [s.clipped for s in run.steps],
        "train_loss_fixed_windows": [evals[s.step].train_loss if s.step in evals else None for s in run.steps],
        "validation_loss": [evals[s.step].val_loss if s.step in evals else None for s in run.steps],
        "seconds": [s.elapsed_s for s in run.steps]})


def show_run(run: RunResult, *, chart_key: str, title: str, with_gradients: bool = False) -> None:
    """A finished run: its headline numbers, its curves, and text drawn before and after training."""
    first, last = run.evals[0], run.last
    a, b, c, d = metric_row(4)
    a.metric("Loss at step 0 (validation)", f"{first.val_loss:.3f}",
             f"{first.val_loss - run.uniform_loss:+.3f} vs ln {len(run.alphabet)} = {run.uniform_loss:.3f}",
             delta_color="off", delta_arrow="off",
             help="Before any update the model guesses nearly uniformly over its characters, so its loss is close "
                  "to ln V, the loss of an exactly uniform guess.")
    b.metric(f"Validation loss after {last.step:,} steps", f"{last.val_loss:.3f}",
             f"{last.val_loss - first.val_loss:+.3f} since step 0", delta_color="inverse",
             help=f"On {run.val_chars:,} characters of fables the model never trains on.")
    c.metric("Train loss", f"{last.train_loss:.3f}",
             f"gap to validation {last.val_loss - last.train_loss:+.3f}", delta_color="off", delta_arrow="off",
             help="Measured on the same fixed windows of the training text each time, without dropout, so it "
                  "compares with the validation loss (the thin line is each step's own batch)."
                  " A growing gap means the model is memorising its training text.")
    d.metric("Speed", f"{run.steps_per_second:.1f} steps/s",
             f"{len(run.steps):,} steps in {run.seconds:.1f} s", delta_color="off", delta_arrow="off",
             help=f"Each step reads {run.config.batch_size} windows of {run.config.shape.context} characters, on "
                  "one CPU thread of this shared server.")
    if run.stopped == "diverged":
        st.warning(f"The run diverged at step {len(run.steps)}: the loss became infinite or not a number, so the "
                   "run ended there. A smaller learning rate, or clipping, keeps the steps from overshooting.",
                   icon=":material/trending_up:")
    elif run.stopped:
        st.info(f"Stopped after {len(run.steps):,} of {run.config.steps:,} steps (the Stop button, or the "
                f"{RUN_BUDGET_S} s budget of a run on this shared server).", icon=":material/stop_circle:")
    steps = run.steps
    show_chart(figure(training_curves, [s.step for s in steps], [s.loss for s in steps], [e.step for e in run.evals],
                      [e.train_loss for e in run.evals], [e.val_loss for e in run.evals], run.uniform_loss,
                      title=title, grad_norms=[s.grad_norm for s in steps] if with_gradients else None,
                      clip=run.config.clip_norm),
               partial(run_table, run), name="baby-gpt-loss-curve", key=chart_key)
    before, after = st.columns(2)
    with before:
        st.markdown(f"**Before training** (step 0), prompted with *{run.config.sample_prompt.strip()}*:")
        st.code(run.config.sample_prompt + run.sample_before, language=None, wrap_lines=True)
    with after:
        st.markdown(f"**After {len(run.steps):,} steps**, the same prompt and the same random draws:")
        st.code(run.config.sample_prompt + run.sample_after, language=None, wrap_lines=True)
    st.caption(f"Sampled at temperature {run.config.sample_temperature:g}, one character at a time. Before training "
               f"every one of the {len(run.alphabet)} characters is about equally likely, so the text is noise; "
               "after, the model has picked up spelling, spaces and common words from the fables.")


# --- SmolLM2: real gradients on the reader's sentence ------------------------------------------------------

@st.cache_data(max_entries=32, show_spinner=False)
def smollm_steps(text: str, other: str, lr: float, steps: int) -> GradientSteps:
    return gradient_steps(lm(), list(ids_of(text)), list(ids_of(other)), lr, steps)


@st.cache_data(max_entries=32, show_spinner=False)
def smollm_layer_gradients(text: str) -> LayerGradients:
    return layer_gradients(lm(), list(ids_of(text)))


def surface_line_job(text: str) -> Job:
    """The loss along the gradient line of the last block: 41 points, a second or two."""
    model = lm()
    ids = list(ids_of(text))

    def work(ctx) -> LossSlice:
        ctx.report(0.05, f"Moving the last block along its gradient: {len(SURFACE_ALPHAS)} points...")
        return loss_slice(model, ids, SURFACE_ALPHAS)

    return job_registry().submit(("loss line", tuple(ids)), work, title="loss along the gradient", budget_s=120)


def surface_plane_job(text: str, seed: int) -> Job:
    """The loss over a plane of the last block's weights: along the gradient and a random direction."""
    model = lm()
    ids = list(ids_of(text))
    rows = len(SURFACE_GRID_BETAS)

    def work(ctx) -> LossSlice:
        ctx.report(0.02, "Over the plane...")
        return loss_slice(model, ids, SURFACE_GRID_ALPHAS, SURFACE_GRID_BETAS, seed=seed, should_stop=ctx.should_stop,
                          on_row=lambda done, total: ctx.report(done / total, f"Over the plane: row {done} of {rows}"))

    return job_registry().submit(("loss plane", tuple(ids), seed), work, title="loss surface", budget_s=120)
