"""The home page: the handbook's map, a search over it, and the model card."""
from __future__ import annotations

import streamlit as st

from concepts import load_catalogue
from ui.models import lm


def model_card() -> None:
    card = lm().card
    st.subheader("The model behind every demo")
    cols = st.columns(4)
    cols[0].metric("Parameters", f"{card.parameters / 1e6:.1f} M", help="Counted from the loaded weights; the "
                   "embedding matrix is shared with the output layer and counted once.")
    cols[1].metric("Layers", card.layers)
    cols[2].metric("Query heads / KV heads", f"{card.heads} / {card.kv_heads}")
    cols[3].metric("Vocabulary", f"{card.vocab_size:,}")
    cols = st.columns(4)
    cols[0].metric("Width (d_model)", card.d_model)
    cols[1].metric("Head size", card.head_dim)
    cols[2].metric("Context length", f"{card.context_length:,}")
    cols[3].metric("Load time", f"{card.load_seconds:.2f} s", help=f"Loaded from the {card.loaded_from}.")
    st.caption(f"{card.name}, a LLaMA-style decoder (RMSNorm, RoPE, SwiGLU, grouped-query attention), running "
               f"on this server's CPU. {card.quant_note}")


def render_home() -> None:
    catalogue = load_catalogue()
    live = catalogue.live
    st.title("LLM Handbook Live")
    st.markdown("How large language models work, one concept per page, each with a demo that runs **a real "
                "model on your own text, right now**. Move a slider, type a sentence, and send the link: it "
                "opens the page exactly as you left it.")
    st.caption(f"{len(live)} of {len(catalogue.concepts)} concepts are live so far; the map shows them all: "
               ":material/play_circle: a live page, :material/schedule: a concept still to come.")
    query = st.text_input("Search the handbook", key="q", bind="query-params", max_chars=100,
                          placeholder="attention, temperature, KV cache...")
    words = [w for w in (query or "").lower().split() if w]

    def matches(c) -> bool:
        haystack = f"{c.title} {c.summary} {c.slug}".lower()
        return all(w in haystack for w in words)

    shown = 0
    for section in catalogue.sections:
        members = [c for c in section.concepts if matches(c)]
        if not members:
            continue
        shown += len(members)
        st.subheader(f"{section.number}. {section.title}")
        for row in range(0, len(members), 3):  # one row of columns per three concepts keeps the rows aligned
            for col, c in zip(st.columns(3), members[row:row + 3]):
                with col:
                    if c.live:
                        st.page_link(f"app_pages/{c.page_name}.py", label=c.title, icon=":material/play_circle:")
                        st.caption(c.summary)
                    else:
                        st.caption(f":material/schedule: {c.title}")
    if words and not shown:
        st.info("No concept matches that search. Try a shorter word, such as *token* or *cache*.")
    st.divider()
    model_card()
