"""Follow a long job from a page: its place in the queue, its progress, a stop button; the result when done."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobState, job_registry

POLL_S = 0.5


def follow(job: Job, *, what: str):
    """The job's result once it has finished, else None after drawing its progress (which polls itself).

    When the job finishes, the polling fragment reruns the whole page, which then finds the result.
    A failed job shows its short error and returns None.
    """
    if job.state is JobState.DONE:
        return job.result
    if job.state is JobState.FAILED:
        st.error(f"The {what} stopped with an error: {job.error}", icon=":material/error:")
        return None
    _progress(job.key, what)
    return None


@st.fragment(run_every=POLL_S)
def _progress(key, what: str) -> None:
    job = job_registry().get(key)
    if job is None or job.finished:
        st.rerun(scope="app")   # draw the result (or the error) with the rest of the page
        return
    if job.state is JobState.QUEUED:
        ahead = job_registry().jobs_ahead(job)
        jobs = "job" if ahead == 1 else "jobs"
        st.progress(0.0, text=f"Queued: {ahead} {jobs} ahead of yours. The {what} starts as soon as the server "
                              "is free." if ahead else f"Starting the {what}...")
    else:
        st.progress(job.fraction, text=job.message or f"Running the {what}...")
    st.button("Stop here", key=f"stop-{abs(hash(key))}", icon=":material/stop_circle:",
              on_click=job.request_stop, disabled=job.stop_requested, width="content",
              help="Ends the run at its next step and shows what was measured so far.")
    st.caption(f"Runs on the server: you may move on and come back, and a reader who opens the same link "
               f"joins this run rather than starting another. Budget {job.budget_s:.0f} s.")
