"""Cached RMSNorm measurements for the layer-norm page, keyed by text and names only.

One traced pass per text is reduced to a NormProfile (the sizes around every norm, plus the attention norms'
input and output vectors: 2 x 30 x T x 576 floats, about 9 MB at 64 tokens) and kept read-only in a bounded
resource cache, so moving the token or layer slider only reads it. Perplexities under an intervention come
from engine.model.perplexity's shared cache.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine.inside.norms import NormProfile, gains, norm_profile
from engine.model.perplexity import Perplexity, perplexity
from engine.tokens.offsets import decode_each, token_ids, visible
from engine.model.traced import NORMS, Interventions
from ui.models import lm

MAX_TOKENS = 64
NORM_LABELS = {"attention": "the 30 attention norms", "ffn": "the 30 FFN norms", "final": "the final norm"}


@st.cache_resource(max_entries=4, show_spinner=False)
def profile(text: str) -> NormProfile:
    return norm_profile(lm(), token_ids(lm(), text))


@st.cache_resource(max_entries=1, show_spinner=False)
def model_gains() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(attention gains [layers, d], FFN gains [layers, d], final gain [d]), copied once per process."""
    return gains(lm())


@st.cache_data(max_entries=64, show_spinner=False)
def token_labels(text: str) -> list[str]:
    return [visible(t) for t in decode_each(lm(), token_ids(lm(), text))]


def unit_gain_perplexities(text: str, norms: tuple[str, ...]) -> tuple[Perplexity, Perplexity]:
    """(the model as it is, the model with the named norms' gains set to 1) on the text: two cached passes."""
    ids = token_ids(lm(), text)
    chosen = frozenset(n for n in norms if n in NORMS)
    return perplexity(lm(), ids), perplexity(lm(), ids, Interventions(unit_norm_gain=chosen))
