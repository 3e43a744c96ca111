"""Cached model work for the distillation page, and its training job.

The page needs the teacher's and a student's full 49,152-way logits at every position of the reader's text (the
KL is summed over the whole vocabulary), so moving the position or T must not run the model again. Those
arrays are 49,152 floats per token, so they are kept in a small `st.cache_resource` (read-only) for texts of at
most MAX_TOKENS tokens. The training runs as a job keyed by its inputs (engine.runtime.jobs): a share link to a finished
comparison opens at once, and a second reader with the same settings joins the running one.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine.training.distillation import (Comparison, RemoveLayers, Setup, compare_students, default_position,
                                 gradient_sizes, middle_block, transfer_set)
from engine.model.forward import forward
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from ui.models import lm

MAX_TOKENS = 64
TEACHER_SHARE = 0.4      # of the progress bar, when the teacher has to read the corpus first
BUDGET_S = 90


@st.cache_data(max_entries=64, show_spinner=False)
def ids_of(text: str) -> tuple[int, ...]:
    return tuple(token_ids(lm(), text))


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@st.cache_resource(max_entries=4, show_spinner=False)
def teacher_logits(text: str) -> np.ndarray:
    """[tokens, vocab] float32, the model's own logits (read-only: shared by every session)."""
    return _readonly(forward(lm(), list(ids_of(text))).logits)


@st.cache_resource(max_entries=4, show_spinner=False)
def student_logits(text: str, removed: int) -> np.ndarray:
    """[tokens, vocab]: the teacher with `removed` layers taken out of the middle of its stack."""
    block = RemoveLayers(middle_block(lm().card.layers, removed))
    return trace(lm(), list(ids_of(text)), interventions=Interventions(weight_transform=block)).logits


def teacher_layers() -> int:
    """Read from the live model's config."""
    return lm().card.layers


@st.cache_data(max_entries=64, show_spinner=False)
def starting_position(text: str) -> int:
    return default_position(teacher_logits(text), ids_of(text))


@st.cache_data(max_entries=256, show_spinner=False)
def gradient_curve(text: str, position: int, removed: int, temperatures: tuple[float, ...]):
    """The soft term's gradient size against T at one position (|d KL / d s|, and with T^2): ~0.1 s of numpy, so it
    is kept; moving T only moves the marker."""
    row = position - 1
    return gradient_sizes(teacher_logits(text)[row], student_logits(text, removed)[row], np.array(temperatures))


def training_job(setup: Setup) -> Job:
    """The hard-versus-soft comparison for these settings: running, stored, or started now."""
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on

    def work(ctx: JobContext) -> Comparison:
        ctx.report(0.0, "Loading the teacher's predictions on the corpus...")
        ts = transfer_set(model, on_paragraph=lambda done, total: ctx.report(
            TEACHER_SHARE * done / total, f"The teacher reads the corpus, paragraph {done} of {total} "
                                          "(once per server; its predictions are kept)"))
        return compare_students(ts, setup, should_stop=ctx.should_stop,
                                on_progress=lambda fraction, message: ctx.report(
                                    TEACHER_SHARE + (1 - TEACHER_SHARE) * fraction, message))

    return job_registry().submit(("distillation", setup), work, title="distillation: hard vs soft students",
                                 budget_s=BUDGET_S)
