"""Cached dropout passes on the live model: keyed by text, rate, pass count and seed, so moving the number of
tokens shown runs no pass."""
from __future__ import annotations

import streamlit as st

from engine.training.dropout import DropoutSpread, dropout_spread
from ui.loss import ids_of
from ui.models import lm


@st.cache_data(max_entries=32, show_spinner=False)
def spread(text: str, p: float, passes: int, seed: int) -> DropoutSpread:
    return dropout_spread(lm(), list(ids_of(text)), p, passes, seed)
