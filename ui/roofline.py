"""The prefill-decode page's measurements: this machine's ceilings (measured once per process, engine.serving.roofline),
the live model's work per pass, and the timed passes as a job keyed by its settings (so a share link opens the
stored run at once; "Measure again" starts a fresh one)."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.serving.roofline import MachinePeaks, PassTimings, WorkProfile, machine_peaks, measure_passes, prefill_lengths, \
    work_profile
from engine.tokens.offsets import token_ids
from ui.models import lm
from ui.samples import load

SAMPLE = "English prose"   # the tokens fed: which ones does not change a dense model's arithmetic, only how many


def peaks(refresh: bool = False) -> MachinePeaks:
    """Half a second the first time in a process (or when asked again), then kept."""
    return machine_peaks(refresh=refresh)


@st.cache_resource(show_spinner=False)
def profile() -> WorkProfile:
    return work_profile(lm())


def sample_ids() -> list[int]:
    return token_ids(lm(), load("corpora")[SAMPLE])


def timing_job(longest: int, context: int, budget_s: float, again: bool = False) -> Job:
    """Prefill at every length up to `longest`, then decode after `context` cached tokens: running, stored or new."""
    model = lm()   # loaded in the page's run, where loading can show progress
    ids = sample_ids()
    lengths = prefill_lengths(longest)

    def work(ctx: JobContext) -> PassTimings:
        return measure_passes(model, ids, lengths, context, on_progress=ctx.report, should_stop=ctx.should_stop)

    return job_registry().submit(("prefill-decode timing", tuple(lengths), int(context)), work,
                                 title="Prefill and decode timing", budget_s=budget_s, fresh=again)
