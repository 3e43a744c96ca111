"""The bpe page's cached work: one training run per corpus (with its replay), SmolLM2's merge list, the check."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from engine.tokens.bpe import (MAX_MERGES, Replay, Segment, merge_list, merge_ranks, replay, segment, train_tokenizer,
                        trainer_tokens)
from engine.tokens.tokenizers import hex_bytes, piece_to_bytes, visible_bytes
from engine.tokens.offsets import token_ids
from charts.tokens import Chip
from ui.models import lm


@dataclass(frozen=True)
class Training:
    merges: tuple[tuple[str, str], ...]   # the trainer's merge list, in rank order
    replay: Replay
    smollm2_tokens: int                   # SmolLM2's own tokenizer on the same corpus


@st.cache_data(max_entries=32, show_spinner=False)
def training(corpus: str) -> Training:
    """Train up to MAX_MERGES merges (the first k of a longer run are exactly a k-merge run) and replay them."""
    merges = tuple(merge_list(train_tokenizer(corpus, MAX_MERGES)))
    return Training(merges, replay(corpus, list(merges)), len(token_ids(lm(), corpus)))


@st.cache_data(max_entries=64, show_spinner=False)
def replayed_segments(text: str, corpus: str, k: int) -> list[Segment]:
    return segment(text, list(training(corpus).merges[:k]))


@st.cache_data(max_entries=64, show_spinner=False)
def library_tokens(corpus: str, k: int, text: str) -> list[str]:
    """The library's own tokenizer, trained on the corpus with exactly k merges, on `text`."""
    return trainer_tokens(corpus, k, text)


@st.cache_resource(max_entries=1, show_spinner=False)
def smollm2_merges() -> tuple[dict[tuple[str, str], int], frozenset[str]]:
    """SmolLM2's merge ranks and vocabulary, read from its loaded tokenizer (read-only, shared)."""
    model = lm()
    with model.tokenizing() as tok:
        return merge_ranks(tok.backend_tokenizer)


def piece_label(piece: str) -> str:
    """A byte-level piece as a reader sees it: ␣ for the space, hex for bytes that are part of a character."""
    raw = piece_to_bytes(piece)
    return visible_bytes(raw) if raw is not None else piece


def pair_label(left: str, right: str) -> str:
    return f"{piece_label(left)} + {piece_label(right)}"


def segment_chips(text: str, segments: list[Segment], k: int) -> tuple[list[Chip], list[bool]]:
    chips, fresh = [], []
    for i, s in enumerate(segments):
        whole = True
        try:
            s.raw.decode("utf-8")
        except UnicodeDecodeError:
            whole = False
        made = f"made by merge {s.made_at}" if s.made_at else "a single byte (no merge)"
        hover = "\n".join([f"token {i + 1}: {visible_bytes(s.raw)}", made,
                           f"bytes: {hex_bytes(s.raw)}", f"characters {s.start}–{s.end}"])
        chips.append(Chip(label=visible_bytes(s.raw), hover=hover, kind="text" if whole else "partial",
                          break_after=s.raw.endswith(b"\n")))
        fresh.append(k > 0 and s.made_at == k)
    return chips, fresh
