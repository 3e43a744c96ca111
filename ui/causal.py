"""Cached computations for the causal-mask and encoder-vs-decoder pages, and the future-edit block both show.

Keyed by text and numbers only. The attention maps of both SmolLM2 passes (mask on and off) and MiniLM's maps
are kept in `st.cache_resource` (read-only arrays, a few MB per text), so a layer or head slider runs no
forward pass; the future-edit result holds only per-token distances and lives in `st.cache_data`.
"""
from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.causal import shift_bars, shift_heatmap
from engine.inside.causal_mask import MaskComparison, compare_mask
from engine.model.encoder import embed_sentences
from engine.inside.encoder_attention import EncoderCapture, EncoderCard, capture_encoder, encoder_card
from engine.inside.future_edit import FutureEdit, HiddenShift, future_edit, replace_last_word
from engine.model.perplexity import Perplexity, perplexity
from engine.tokens.offsets import token_ids, visible
from engine.model.traced import Interventions
from ui.charts import figure, show_chart
from ui.inputs import word_input
from ui.models import encoder, lm
from ui.text import described_metric, escape_markdown

MAX_TOKENS = 64   # SmolLM2 tokens: a 64 x 64 map stays readable, and two passes over every layer stay light
NAMES = {"SmolLM2": "SmolLM2 (causal decoder)", "SmolLM2, mask removed": "SmolLM2, mask removed",
         "MiniLM": "MiniLM (bidirectional encoder)"}
# Metric labels short enough for a third of a narrow window; the descriptions under them say the rest.
METRIC_LABELS = {"SmolLM2": ("SmolLM2: max |Δ|", "causal decoder"),
                 "SmolLM2, mask removed": ("No mask: max |Δ|", "SmolLM2, mask removed"),
                 "MiniLM": ("MiniLM: max |Δ|", "bidirectional encoder")}


@st.cache_resource(max_entries=4, show_spinner=False)
def mask_comparison(text: str) -> MaskComparison:
    """SmolLM2's attention in every layer and head, with and without the causal mask (read-only arrays)."""
    model = lm()
    return compare_mask(model, token_ids(model, text))


@st.cache_resource(max_entries=8, show_spinner=False)
def encoder_captured(text: str) -> EncoderCapture:
    """MiniLM's attention maps and hidden states for `text` (read-only arrays)."""
    return capture_encoder(encoder(), text)


@st.cache_data(max_entries=64, show_spinner=False)
def edit_result(text: str, new_word: str) -> FutureEdit | None:
    """The future-edit test for `text` with its last word replaced; None if the text has no word."""
    edit = replace_last_word(text, new_word)
    return None if edit is None else future_edit(lm(), encoder(), edit)


@st.cache_data(max_entries=64, show_spinner=False)
def sentence_vectors(first: str, second: str) -> np.ndarray:
    """MiniLM's sentence embeddings [2, 384] of two texts (mean-pooled, unit length)."""
    return embed_sentences(encoder(), [first, second])


def perplexities(text: str) -> tuple[Perplexity, Perplexity]:
    """The text's perplexity with the causal mask and without (engine.model.perplexity keeps its own bounded cache)."""
    model = lm()
    ids = token_ids(model, text)
    return perplexity(model, ids), perplexity(model, ids, Interventions(causal_mask=False))


def shift_value(value: float) -> str:
    """Exactly 0 is shown as 0; anything else with four significant digits (never rounded down to 0)."""
    return "0" if value == 0 else f"{value:.4g}"


def _shift_table(shifts: list[HiddenShift]) -> pd.DataFrame:
    rows = [dict(model=s.model, position=i + 1, token=s.tokens[i], depth=depth, max_abs_difference=s.max_abs[d, i],
                 relative_change=s.relative[d, i])
            for s in shifts for d, depth in enumerate(s.depths) for i in range(len(s.tokens))]
    return pd.DataFrame(rows, columns=["model", "position", "token", "depth", "max_abs_difference", "relative_change"])


def future_edit_section(text: str, default_word: str, key: str) -> FutureEdit | None:
    """The future-edit test as a reader runs it: a word to put in place of the text's last word (bound to the URL
    as "word"), then the measured result, or a message saying what to type. Returns the result, if any."""
    word = word_input("Replace the last word with", "word", default_word, help="Any word; its punctuation stays.")
    if not word:
        st.info("Type a word to put in place of the last one.", icon=":material/edit:")
        return None
    encoder()   # loaded here, where its spinner can show, before the cached computation needs it
    result = edit_result(text, word)
    if result is None:
        st.info("Your text has no word to replace (only symbols): end it with a word.", icon=":material/edit:")
    elif result.edit.old_word == word:
        st.info(f"“{escape_markdown(word)}” is already the last word: type a different one.", icon=":material/edit:")
        return None
    else:
        show_future_edit(result, key)
    return result


def show_future_edit(result: FutureEdit, key: str) -> None:
    """The measured outcome of the future-edit test: three max |difference| metrics, the verdict, and two charts
    (each earlier token's change at the last layer; the change through the layers for one chosen model)."""
    edit = result.edit
    st.markdown(f"**Before:** {escape_markdown(edit.original)}  \n**After:** {escape_markdown(edit.edited)}")
    shifts = [result.decoder, result.decoder_unmasked, result.encoder]
    for column, shift in zip(st.columns(3), shifts):
        label, note = METRIC_LABELS[shift.model]
        described_metric(column, label, shift_value(shift.largest), note,
                         help=f"The largest change of any single number in the vectors of the {len(shift.tokens)} "
                              f"earlier tokens, at all {len(shift.depths)} depths (the embedding and every layer's "
                              "output), in the model's own units. 0 means bit for bit the same.")
    decoder, encoder_shift = result.decoder, result.encoder
    if not decoder.tokens:
        st.info("Your text has no token before its last word, so there is nothing earlier to compare. Add a few "
                "words in front of it.", icon=":material/edit:")
        return
    if decoder.bit_identical:
        st.success(f"**Nothing leaked backwards.** SmolLM2's vectors for all {len(decoder.tokens)} earlier tokens, "
                   f"at all {len(decoder.depths)} depths, came out bit for bit the same: max |difference| = 0.",
                   icon=":material/check_circle:")
    else:
        st.warning(f"SmolLM2's earlier vectors moved by up to {decoder.largest:.3g}: they should not have.",
                   icon=":material/warning:")
    if not encoder_shift.sees_change:
        reason = ("its input was cut before the last word" if result.encoder_truncated else
                  "it lowercases and strips accents, so both texts are the same word pieces to it")
        st.info(f"MiniLM cannot see this edit: {reason}. Try a different word.", icon=":material/info:")
    panels = [(NAMES[s.model], [visible(t) for t in s.tokens], s.relative[-1]) for s in shifts]
    show_chart(figure(shift_bars, panels, title="How far each earlier token moved, last layer: |h − h′| / |h|"),
               partial(_shift_table, shifts), name="future-edit-last-layer", key=f"{key}_bars")
    options = list(NAMES.values())
    chosen = st.segmented_control("Layer by layer, for", options, default=options[2], key=f"{key}_model",
                                  bind="query-params", help="Where the change enters: depth 0 is the embedding, "
                                  "read before any attention, so it never moves.") or options[2]
    shift = shifts[options.index(chosen)]
    top = float(shift.relative.max()) if shift.relative.size else 0.0   # each model on its own colour scale
    show_chart(figure(shift_heatmap, shift.relative, shift.depths, [visible(t) for t in shift.tokens], top,
                      title=f"{shift.model}: change layer by layer"),
               partial(_shift_table, [shift]), name=f"future-edit-layers-{shift.model}", key=f"{key}_depths")


@st.cache_resource(show_spinner=False)
def minilm_card() -> EncoderCard:
    return encoder_card(encoder())
