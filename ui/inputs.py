"""The one bounded input for user text, bound to the URL so the page link carries it."""
from __future__ import annotations

import streamlit as st

from engine.tokens.text_limits import DEFAULT_MAX_CHARS, DEFAULT_MAX_TOKENS, bound_text, clean_text
from engine.tokens.offsets import token_offsets
from ui.models import lm


def prompt_input(key: str, default: str, label: str = "Your text", *, max_chars: int = DEFAULT_MAX_CHARS,
                 max_tokens: int = DEFAULT_MAX_TOKENS, height: int | None = None, help: str | None = None) -> str:
    """A text area whose value is cleaned and cut to the limits; a note says what was cut. Returns the text."""
    # max_chars on the widget too: the browser then refuses longer pastes, so the URL (the share link) stays
    # short enough for servers to accept; a longer value arriving in a link is still cut below, with a note.
    kwargs = dict(key=key, bind="query-params", max_chars=max_chars, help=help or
                  f"Up to {max_tokens} tokens (and {max_chars:,} characters); longer text is cut with a note.")
    if key not in st.session_state:  # once a callback has set the text, a default would only draw a warning
        kwargs["value"] = default
    if height:
        raw = st.text_area(label, height=height, **kwargs)
    else:
        raw = st.text_input(label, **kwargs)
    model = lm()
    bounded = bound_text(raw, lambda text: token_offsets(model, text), max_chars, max_tokens)
    for note in bounded.notes:
        st.caption(f":material/content_cut: {note}")
    return bounded.text



def whole_number_input(label: str, low: int, high: int, default: int, key: str, *, help: str | None = None,
                       container=None, disabled: bool = False) -> int:
    """A whole-number input bound to the URL that survives any link value.

    Streamlit 1.67's integer number_input raises OverflowError on a link value such as `1e400` or `inf`
    (it calls int(inf)); its float variant drops non-finite or out-of-range values and falls back to the
    default, so the float variant is used, shown without decimals.
    """
    value = (container or st).number_input(label, min_value=float(low), max_value=float(high), value=float(default),
                                           step=1.0, format="%.0f", key=key, bind="query-params", help=help,
                                           disabled=disabled)
    return int(round(value)) if value is not None else default


def ranged_slider(label: str, low: int, high: int, default: int, key: str, *, container=None,
                  help: str | None = None) -> int:
    """A whole-number slider bound to the URL whose range depends on the input (a position in the reader's text).

    Streamlit raises when a kept value falls outside a new range (a shorter text after a longer one), so a
    value kept from before is pulled into the range first. A range of one value (a two-token text) draws no
    slider, since Streamlit refuses a slider whose ends are equal: there is nothing to choose.
    """
    if high <= low:
        return low
    kept = st.session_state.get(key)
    if isinstance(kept, (int, float)) and not low <= kept <= high:
        st.session_state[key] = int(min(max(kept, low), high))
    kwargs = dict(key=key, bind="query-params", help=help)
    if key not in st.session_state:   # a value set above must not meet a default (Streamlit warns on both)
        kwargs["value"] = min(max(int(default), low), high)
    return (container or st).slider(label, low, high, **kwargs)


def stop_if_empty(text: str, hint: str) -> None:
    """The empty state: tell the reader what to type (with an example) instead of drawing an empty demo."""
    if not text.strip():
        st.info(hint, icon=":material/edit:")
        st.stop()


def layer_and_head(layer_column, head_column, default_layer: int, default_head: int,
                   head_help: str | None = None) -> tuple[int, int]:
    """The layer and head pickers of the attention pages, 1-based and sized from the model itself."""
    card = lm().card
    layer = layer_column.slider(f"Layer (1-{card.layers})", 1, card.layers, default_layer, key="layer",
                                bind="query-params", help=f"Layer 1 reads the token embeddings; layer "
                                f"{card.layers} feeds the final prediction.")
    group = card.heads // card.kv_heads
    sharing = ", ".join(f"heads {g * group + 1}-{(g + 1) * group} share key/value head {g + 1}"
                        for g in range(card.kv_heads))
    head = head_column.slider(f"Head (1-{card.heads})", 1, card.heads, default_head, key="head",
                              bind="query-params", help=head_help or f"Grouped-query attention: {sharing}.")
    return layer, head


def word_input(label: str, key: str, default: str, on_change=None, help: str | None = None,
               max_chars: int = 40) -> str:
    """A one-word text input bound to the URL: cleaned, trimmed and cut to `max_chars`."""
    raw = st.text_input(label, value=default, key=key, bind="query-params", max_chars=max_chars, on_change=on_change,
                        help=help)
    return clean_text(raw)[0].strip()[:max_chars]


def accept_url_alias(key: str, aliases: dict[str, str]) -> bool:
    """Let a link give a widget's value by a short alias (?method=tsne for "t-SNE"). True if one was taken.

    Call before the widget is created; the widget should then be created without a default.
    """
    raw = st.query_params.get(key)
    if key not in st.session_state and raw in aliases:
        st.session_state[key] = aliases[raw]
        return True
    return False
