"""The token-cost page's editable price table (bound to the link) and its cached chunk counts."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.tokens.token_cost import Chunk, Price, chunk_tokens
from engine.tokens.tokenizers import TokenizerSpec, tokenize_with
from ui.models import encoder, lm

MAX_PRICE = 1000.0   # US dollars per million tokens; the dearest published prices are far below this


def price_table(specs: list[TokenizerSpec], example: Price) -> dict[str, Price]:
    """One row per tokenizer: input and output dollars per million tokens, each bound to the page link."""
    head = st.columns([3, 2, 2], vertical_alignment="bottom")
    head[0].markdown("**Tokenizer** (models that use it)")
    head[1].markdown("**Input**, $ per 1M tokens")
    head[2].markdown("**Output**, $ per 1M tokens")
    prices = {}
    for spec in specs:
        row = st.columns([3, 2, 2], vertical_alignment="center")
        row[0].markdown(f"{spec.name}  \n:gray[{spec.used_by}]")
        values = []
        for column, kind, default in ((row[1], "in", example.input), (row[2], "out", example.output)):
            value = column.number_input(f"{kind} price for {spec.name}", min_value=0.0, max_value=MAX_PRICE,
                                        value=default, step=0.05, format="%.3f", key=f"{kind}_{spec.key}",
                                        bind="query-params", label_visibility="collapsed")
            values.append(default if value is None else float(value))
        prices[spec.key] = Price(*values)
    return prices


@st.cache_data(max_entries=64, show_spinner=False)
def chunks_with_recount(key: str, text: str, size: int, overlap: int) -> tuple[list[Chunk], list[int]]:
    """The chunks of `text` by one tokenizer, and each chunk's token count when re-tokenized on its own."""
    tokens = tokenize_with(key, text, lm(), encoder())
    chunks = chunk_tokens(tokens, size, overlap)
    recount = [len(tokenize_with(key, text[c.start:c.end], lm(), encoder())) for c in chunks]
    return chunks, recount


def chunk_table(text: str, chunks: list[Chunk], recount: list[int]) -> pd.DataFrame:
    return pd.DataFrame({
        "chunk": [c.index for c in chunks], "first token": [c.first + 1 for c in chunks],
        "last token": [c.last for c in chunks], "tokens": [c.tokens for c in chunks],
        "characters": [c.end - c.start for c in chunks], "tokens when re-tokenized alone": recount,
        "text": [text[c.start:c.end] for c in chunks]})
