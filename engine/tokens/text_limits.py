"""One place that bounds user text: characters first (cheap), then tokens, with a note saying what was cut."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEFAULT_MAX_CHARS = 4000
DEFAULT_MAX_TOKENS = 256

# C0/C1 control characters other than tab and newline: invisible, and they garble display.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class BoundedText:
    text: str
    notes: tuple[str, ...] = ()

    @property
    def was_changed(self) -> bool:
        return bool(self.notes)


def clean_text(raw: object) -> tuple[str, list[str]]:
    """Coerce anything (a URL value may be a list or None) to a str without control characters."""
    notes: list[str] = []
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else ""
    text = "" if raw is None else str(raw)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    cleaned = _CONTROL.sub("", text)
    if cleaned != text:
        notes.append(f"Removed {len(text) - len(cleaned)} invisible control character(s).")
    # Lone surrogates cannot be encoded as UTF-8 and would break the tokenizer.
    safe = cleaned.encode("utf-8", "replace").decode("utf-8")
    return unicodedata.normalize("NFC", safe) if safe != cleaned else safe, notes


def bound_text(raw: object, count_tokens, max_chars: int = DEFAULT_MAX_CHARS,
               max_tokens: int = DEFAULT_MAX_TOKENS) -> BoundedText:
    """Clean `raw` and cut it to `max_chars` characters and `max_tokens` tokens.

    `count_tokens(text) -> list[tuple[int, int]]` gives each token's (start, end) character offsets,
    so the token cut lands on a token boundary.
    """
    text, notes = clean_text(raw)
    if len(text) > max_chars:
        notes.append(f"Cut to the first {max_chars:,} of {len(text):,} characters.")
        text = text[:max_chars]
    offsets = count_tokens(text) if text else []
    if len(offsets) > max_tokens:
        end = offsets[max_tokens - 1][1]
        notes.append(f"Cut to the first {max_tokens} of {len(offsets):,} tokens.")
        text = text[:end]
    return BoundedText(text=text, notes=tuple(notes))
