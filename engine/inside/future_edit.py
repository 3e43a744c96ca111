"""The future-edit test: change the last word of a text and measure how far each EARLIER token's hidden vectors
move, in SmolLM2 as trained (causal), SmolLM2 with its causal mask removed, and MiniLM (bidirectional).

A causal decoder's vector at position i is a function of tokens 0..i only, so an edit after i cannot reach it:
the vectors must come out bit for bit the same. Two details keep that claim honest:
- Like with like. Both SmolLM2 passes record the same names ("resid_out") in every layer, so both run the same
  fused attention kernel; mixing the fused and the explicit path would differ by float rounding (~1e-6) even
  where nothing changed (engine/model/traced.py's docstring).
- Only tokens both texts share are compared: the longest common prefix of the two token-id lists, as each
  model splits the text (byte-level BPE for SmolLM2, lowercased WordPiece with [CLS] in front for MiniLM).

Depth 0 is the embedding (before any attention), depth L the output of layer L. Results keep only the small
per-token distances, never the hidden states themselves.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.model.encoder import LiveEncoder
from engine.inside.encoder_attention import MAX_ENCODER_TOKENS, capture_encoder
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import Interventions, trace

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class WordEdit:
    original: str
    edited: str
    old_word: str
    new_word: str


def replace_last_word(text: str, new_word: str) -> WordEdit | None:
    """`text` with its last word (a run of letters, digits or _) replaced, the punctuation after it kept.
    None if the text has no word."""
    last = None
    for last in _WORD.finditer(text):   # the last match wins; linear in the text, unlike a backtracking "$" search
        pass
    if last is None:
        return None
    edited = text[:last.start()] + new_word + text[last.end():]
    return WordEdit(original=text, edited=edited, old_word=last.group(), new_word=new_word)


def shared_prefix(a, b) -> int:
    """How many leading items two sequences share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True, eq=False)
class HiddenShift:
    """How far one model's vectors for the earlier tokens moved when the last word changed."""
    model: str
    tokens: tuple[str, ...]     # the earlier tokens (the same in both texts), as this model splits them
    depths: tuple[str, ...]     # "embedding", "layer 1", ...
    max_abs: np.ndarray         # [depths, tokens] largest |h - h'| over the vector's dimensions
    relative: np.ndarray        # [depths, tokens] |h - h'| / |h| (Euclidean lengths)
    sees_change: bool = True    # False when this model reads both texts as the same tokens (e.g. a case change)

    @property
    def largest(self) -> float:
        """The largest |difference| of any number in any earlier token's vector at any depth (0.0 if none)."""
        return float(self.max_abs.max()) if self.max_abs.size else 0.0

    @property
    def bit_identical(self) -> bool:
        return bool(self.max_abs.size) and self.largest == 0.0


def hidden_shift(model: str, before: np.ndarray, after: np.ndarray, count: int, tokens, depth_names) -> HiddenShift:
    """Compare the first `count` positions of two [depths, T, d] stacks of hidden states."""
    a, b = before[:, :count], after[:, :count]
    diff = a - b                                      # float32, so equal vectors give exactly 0
    norm = np.linalg.norm(a.astype(np.float64), axis=-1)
    relative = np.linalg.norm(diff.astype(np.float64), axis=-1) / np.maximum(norm, 1e-12)
    max_abs = np.abs(diff).max(-1) if count else np.zeros((a.shape[0], 0), np.float32)
    return HiddenShift(model=model, tokens=tuple(tokens), depths=tuple(depth_names),
                       max_abs=max_abs.astype(np.float64), relative=relative)


def decoder_hidden_states(lm: LiveModel, ids: list[int], causal_mask: bool = True) -> np.ndarray:
    """SmolLM2's residual stream [layers + 1, T, d_model]: the token embeddings, then each layer's output."""
    traced = trace(lm, ids, record={"resid_out"}, interventions=Interventions(causal_mask=causal_mask))
    with torch.no_grad():
        embedding = lm.model.model.embed_tokens.weight[torch.tensor(ids)].numpy()   # indexing copies the rows
    return np.concatenate([embedding[None], traced["resid_out"]])


def _depths(first: str, layers: int) -> list[str]:
    return [first] + [f"layer {l + 1}" for l in range(layers)]


@dataclass(frozen=True, eq=False)
class FutureEdit:
    edit: WordEdit
    decoder: HiddenShift             # SmolLM2 as trained
    decoder_unmasked: HiddenShift    # SmolLM2, causal mask removed
    encoder: HiddenShift             # MiniLM
    encoder_truncated: bool          # MiniLM read only the start of the text


def future_edit(lm: LiveModel, encoder: LiveEncoder, edit: WordEdit,
                max_encoder_tokens: int = MAX_ENCODER_TOKENS) -> FutureEdit:
    """Run both texts of `edit` through both models and measure the earlier tokens' shifts."""
    a, b = token_ids(lm, edit.original), token_ids(lm, edit.edited)
    if not a or not b:
        raise ValueError("both texts need at least one token")
    n = shared_prefix(a, b)
    tokens = decode_each(lm, a[:n])
    layers = lm.model.config.num_hidden_layers
    decoder = {}
    for mask in (True, False):
        before, after = decoder_hidden_states(lm, a, mask), decoder_hidden_states(lm, b, mask)
        name = "SmolLM2" if mask else "SmolLM2, mask removed"
        decoder[mask] = hidden_shift(name, before, after, n, tokens, _depths("embedding", layers))
    ea, eb = capture_encoder(encoder, edit.original, max_encoder_tokens), capture_encoder(encoder, edit.edited,
                                                                                            max_encoder_tokens)
    # With identical word pieces (MiniLM lowercases: "Snow" -> "snow") nothing changed for it; compare none.
    sees = ea.ids != eb.ids
    m = shared_prefix(ea.ids, eb.ids) if sees else 0
    encoder_shift = hidden_shift("MiniLM", ea.hidden_states, eb.hidden_states, m, ea.tokens[:m],
                                 _depths("embeddings", ea.layers))
    if not sees:
        encoder_shift = replace(encoder_shift, sees_change=False)
    return FutureEdit(edit=edit, decoder=decoder[True], decoder_unmasked=decoder[False], encoder=encoder_shift,
                      encoder_truncated=ea.truncated or eb.truncated)
