"""Cached computations for the transformer page, keyed by text and numbers only.

One traced pass per (text, block) records every stage of that block (the attention probabilities of that
block included) and is kept read-only in a bounded resource cache: clicking another stage or token only
reads it. An intervention's outcome (one more pass) is cached by the text and the blocks skipped or kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.model.architecture import ParameterSplit, block_interventions, model_logits, outcome, parameter_split, stage_pass
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.model.traced import TracedPass
from ui.models import lm

MAX_TOKENS = 48     # one row per token in a glimpse; 9 x 48 x 48 attention probabilities stay small
SHOWN_TOKENS = 8    # next tokens compared before and after an intervention


@st.cache_resource(max_entries=8, show_spinner=False)
def stages(text: str, layer: int) -> TracedPass:
    return stage_pass(lm(), token_ids(lm(), text), layer)


@st.cache_resource(max_entries=1, show_spinner=False)
def parameters() -> ParameterSplit:
    return parameter_split(lm())


@st.cache_data(max_entries=32, show_spinner=False)
def own_logits_gap(text: str, layer: int) -> float:
    """Largest |traced logit - model logit| over the whole text and vocabulary: the model's own forward
    (its SDPA attention, not the traced path) against the traced pass shown."""
    return float(np.abs(model_logits(lm(), token_ids(lm(), text)) - stages(text, layer).logits).max())


@st.cache_data(max_entries=64, show_spinner=False)
def token_labels(text: str) -> list[str]:
    return [visible(t) for t in decode_each(lm(), token_ids(lm(), text))]


@st.cache_data(max_entries=2048, show_spinner=False)
def token_text(token_id: int) -> str:
    return decode_each(lm(), [int(token_id)])[0]


@dataclass(frozen=True)
class Comparison:
    """The intact model against a changed one on the same text (only what the page shows is kept)."""
    ids: tuple[int, ...]           # the union of both models' most likely next tokens, intact order first
    intact: np.ndarray             # their probabilities, intact
    changed: np.ndarray            # ... changed
    intact_nll: np.ndarray         # [T - 1] per-token loss (nats)
    changed_nll: np.ndarray
    intact_top1: float
    changed_top1: float
    changed_top_id: int

    @property
    def intact_perplexity(self) -> float:
        return float(np.exp(self.intact_nll.mean())) if self.intact_nll.size else float("nan")

    @property
    def changed_perplexity(self) -> float:
        return float(np.exp(self.changed_nll.mean())) if self.changed_nll.size else float("nan")


@st.cache_data(max_entries=128, show_spinner=False)
def comparison(text: str, skip: tuple[int, ...], exit_layer: int | None) -> Comparison:
    """Skip the 0-based blocks in `skip` and stop after `exit_layer` blocks (None: run them all)."""
    ids = token_ids(lm(), text)
    intact = outcome(lm(), ids, block_interventions())
    changed = outcome(lm(), ids, block_interventions(frozenset(skip), exit_layer))
    order = list(np.argsort(-intact.next_probs, kind="stable")[:SHOWN_TOKENS])
    order += [i for i in np.argsort(-changed.next_probs, kind="stable")[:SHOWN_TOKENS // 2] if i not in order]
    return Comparison(ids=tuple(int(i) for i in order), intact=intact.next_probs[order],
                      changed=changed.next_probs[order], intact_nll=intact.token_nll, changed_nll=changed.token_nll,
                      intact_top1=intact.top1_accuracy, changed_top1=changed.top1_accuracy,
                      changed_top_id=int(np.argmax(changed.next_probs)))
