"""Cached tokenizer results for the token pages (keys: strings and numbers), and tokens turned into chips."""
from __future__ import annotations

import unicodedata

import pandas as pd
import streamlit as st

from charts.tokens import Chip
from engine.tokens.tokenizers import (ChatAnswer, TokenPiece, Tokenization, ask, compare_tokenizers, hex_bytes,
                               smollm2_tokens, visible_text)
from ui.models import encoder, lm


@st.cache_data(max_entries=256, show_spinner=False)
def smollm2(text: str) -> list[TokenPiece]:
    return smollm2_tokens(lm(), text)


@st.cache_data(max_entries=64, show_spinner=False)
def comparison(text: str) -> list[Tokenization]:
    return compare_tokenizers(text, lm(), encoder())


@st.cache_data(max_entries=64, show_spinner=False)
def model_answer(question: str, max_new_tokens: int = 24) -> ChatAnswer:
    return ask(lm(), question, max_new_tokens)


def _character_note(text: str, token: TokenPiece) -> str:
    chars = text[token.start:token.end]
    parts = []
    for ch in chars:
        name = unicodedata.name(ch, "")
        parts.append(f"{visible_text(ch)} U+{ord(ch):04X}{' ' + name.lower() if name else ''}"
                     f" = {hex_bytes(ch.encode('utf-8'))}")
    return "; ".join(parts)


def hover_lines(text: str, index: int, token: TokenPiece) -> str:
    """What a chip's hover says: position, id, vocabulary piece, bytes and the characters it covers."""
    lines = [f"token {index + 1} · id {token.id}", f"piece: {token.piece}"]
    if token.kind == "unknown":
        lines.append("not in the vocabulary: replaced by [UNK], its content is lost")
    elif token.piece.startswith("##"):
        lines.append("'##': continues the previous piece of the same word")
    if token.raw and token.kind != "unknown":
        lines.append(f"bytes: {hex_bytes(token.raw)} ({len(token.raw)} byte{'s' if len(token.raw) != 1 else ''})")
    lines.append(f"characters {token.start}–{token.end}: {visible_text(text[token.start:token.end])}")
    if token.kind == "partial":
        lines.append("only part of a character: alone it decodes to \ufffd")
        lines.append(f"whole character: {_character_note(text, token)}")
    if token.kind == "special":
        lines.append("a special (control) token")
    return "\n".join(lines)


def chips_for(text: str, tokens: list[TokenPiece], show_ids: bool = False, limit: int | None = None) -> list[Chip]:
    shown = tokens if limit is None else tokens[:limit]
    return [Chip(label=str(t.id) if show_ids else t.label, hover=hover_lines(text, i, t), kind=t.kind,
                 ident=t.id, break_after=not show_ids and t.raw.endswith(b"\n"))
            for i, t in enumerate(shown)]


def token_table(text: str, tokens: list[TokenPiece]) -> pd.DataFrame:
    return pd.DataFrame({
        "position": range(1, len(tokens) + 1),
        "token_id": [t.id for t in tokens],
        "piece": [t.piece for t in tokens],
        "shown_as": [t.label for t in tokens],
        "utf8_bytes": [hex_bytes(t.raw) for t in tokens],
        "start": [t.start for t in tokens],
        "end": [t.end for t in tokens],
        "characters": [text[t.start:t.end] for t in tokens],
        "kind": [t.kind for t in tokens],
    })
