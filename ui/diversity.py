"""Cached sampling runs and the temperature sweep job for the sampling page."""
from __future__ import annotations

import streamlit as st

from engine.decoding.diversity import DiversityPoint, diversity_at, temperature_sweep
from engine.runtime.jobs import Job, job_registry
from ui.models import encoder, lm

SWEEP_TEMPERATURES = (0.0, 0.3, 0.6, 0.9, 1.2, 1.5, 2.0)


@st.cache_data(max_entries=64, show_spinner=False)
def diversity(prompt: str, temperature: float, samples: int, length: int, seed: int, top_p: float) -> DiversityPoint:
    return diversity_at(lm(), encoder(), prompt, temperature, samples, length, seed, top_p)


def sweep_job(prompt: str, samples: int, length: int, seed: int, top_p: float) -> Job:
    """Diversity at each of SWEEP_TEMPERATURES, as a job: seconds of sampling, shared by identical links."""
    model, enc = lm(), encoder()   # loaded here, in the page's run, where loading can show progress

    def work(ctx):
        return temperature_sweep(model, enc, prompt, list(SWEEP_TEMPERATURES), samples, length, seed, top_p,
                                 should_stop=ctx.should_stop,
                                 on_step=lambda done, total: ctx.report(done / total,
                                                                        f"{done} of {total} temperatures sampled"))

    return job_registry().submit(("temperature sweep", prompt, samples, length, seed, top_p), work,
                                 title="temperature sweep", budget_s=90)
