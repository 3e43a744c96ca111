"""SmolLM2's tokenizer with character offsets, and readable names for its byte-level pieces."""
from __future__ import annotations

from dataclasses import dataclass

from engine.model.live_model import LiveModel


@dataclass(frozen=True)
class Token:
    id: int
    piece: str         # the vocabulary entry as stored (byte-level BPE: 'Ġ' is a space)
    text: str          # the text this token decodes to on its own
    start: int         # character offsets into the source text
    end: int


def tokenize(lm: LiveModel, text: str) -> list[Token]:
    if not text:
        return []
    with lm.tokenizing() as tok:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        pieces = tok.convert_ids_to_tokens(ids)
        texts = [tok.decode([i]) for i in ids]
    return [Token(i, p, t, s, e) for i, p, t, (s, e) in zip(ids, pieces, texts, enc["offset_mapping"])]


def token_ids(lm: LiveModel, text: str) -> list[int]:
    if not text:
        return []
    with lm.tokenizing() as tok:
        return tok(text, add_special_tokens=False)["input_ids"]


def token_offsets(lm: LiveModel, text: str) -> list[tuple[int, int]]:
    if not text:
        return []
    with lm.tokenizing() as tok:
        return [tuple(o) for o in tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]


def decode(lm: LiveModel, ids: list[int]) -> str:
    with lm.tokenizing() as tok:
        return tok.decode(ids)


def decode_each(lm: LiveModel, ids: list[int]) -> list[str]:
    with lm.tokenizing() as tok:
        return [tok.decode([i]) for i in ids]


def visible(piece_text: str) -> str:
    """Show whitespace that would otherwise vanish in a chart label."""
    return (piece_text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")) or "∅"
