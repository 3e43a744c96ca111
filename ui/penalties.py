"""Cached penalized greedy runs for the repetition-penalty page."""
from __future__ import annotations

import streamlit as st

from engine.decoding.penalties import Penalty, PenalizedRun, generate_with_penalty
from ui.decoding import prompt_ids
from ui.models import lm


@st.cache_data(max_entries=128, show_spinner=False)
def penalized_run(text: str, kind: str, strength: float, count_prompt: bool, steps: int) -> PenalizedRun:
    return generate_with_penalty(lm(), list(prompt_ids(text)), steps, Penalty(kind, strength, count_prompt))
