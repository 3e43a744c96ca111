"""The benchmarks page's model work: one item scored at once (cached), the whole set as a job, texts read once."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.using.benchmarks import (LETTERS, VARIANTS, ItemScores, TextReading, load_items, read_text, score_item,
                               score_set)
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import decode_each
from ui.models import lm

SET_BUDGET_S = 180


@st.cache_data(max_entries=32, show_spinner=False)
def item_scores(index: int) -> ItemScores:
    """One bundled item scored in every format (two short passes)."""
    return score_item(lm(), load_items()[index])


@st.cache_data(max_entries=64, show_spinner=False)
def reading(text: str) -> tuple[TextReading, list[str]]:
    """Per-token ln p of a text and its tokens (the scored ones: all but the first)."""
    model = lm()
    read = read_text(model, text)
    return read, decode_each(model, list(read.ids[1:]))


def set_job(again: bool = False) -> Job:
    """Every bundled item scored in every format; keyed by the items themselves, so an edit re-scores."""
    model, items = lm(), load_items()

    def work(ctx: JobContext):
        def on_step(done: int, total: int) -> None:
            part = "lettered prompts" if done <= len(items) else "answer-text prompts"
            ctx.report(done / total, f"Scoring the {part}: step {done} of {total}")
        return score_set(model, items, on_step, ctx.should_stop)

    return job_registry().submit(("benchmarks set", items), work, title="Scoring the benchmark",
                                 budget_s=SET_BUDGET_S, fresh=again)


def item_table(scored: tuple[ItemScores, ...], variant: str) -> pd.DataFrame:
    """One row per item under one format: each option's score, the pick, the true answer, right or wrong."""
    rows = {"item": range(1, len(scored) + 1), "question": [s.item.question for s in scored]}
    for j, letter in enumerate(LETTERS):
        rows[f"score {letter}"] = [round(float(s.scores(variant)[j]), 4) for s in scored]
    rows["picked"] = [f"{LETTERS[s.predicted(variant)]}. {s.item.choices[s.predicted(variant)]}" for s in scored]
    rows["true answer"] = [f"{LETTERS[s.item.answer]}. {s.item.choices[s.item.answer]}" for s in scored]
    rows["correct"] = [s.correct(variant) for s in scored]
    return pd.DataFrame(rows)


def variant_label(variant: str) -> str:
    return VARIANTS.get(variant, variant)
