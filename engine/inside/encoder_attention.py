"""Inside MiniLM (all-MiniLM-L6-v2), the bidirectional encoder: every attention map and every layer's hidden
states for a text, to set beside SmolLM2's (engine/inside/attention.py) on the pages that compare the two.

Indices are 0-based (layers 0..5, heads 0..11, positions 0..T-1, read from the live model's config, never
typed in). `hidden_states[0]` is the embedding output (token + position + segment embedding, layer-normed);
`hidden_states[L]` for L >= 1 is layer L's output; the last one is what sentence-transformers mean-pools into
the sentence embedding (engine/encoder.embed_sentences).

The shared encoder is loaded with eager attention (engine/encoder.load_encoder), the only kernel that returns
attention weights; `output_attentions` and `output_hidden_states` are per-call arguments, so nothing about the
shared model or its config is changed here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.model.encoder import LiveEncoder
from engine.runtime.gate import model_work

MAX_ENCODER_TOKENS = 256   # all-MiniLM-L6-v2 cuts its input at 256 word pieces (its model card): so do we


@dataclass(frozen=True, eq=False)
class EncoderCapture:
    """Every attention weight and hidden state of one MiniLM pass. Arrays are read-only (shared via caches)."""
    ids: list[int]
    tokens: list[str]           # WordPiece tokens: [CLS] first, [SEP] last; "##" marks a word's continuation
    attentions: np.ndarray      # [layers, heads, T, T] float32; rows sum to 1; nothing is masked
    hidden_states: np.ndarray   # [layers + 1, T, d_model] float32
    truncated: bool             # the text had more word pieces than the encoder reads: its end was cut

    @property
    def layers(self) -> int:
        return self.attentions.shape[0]

    @property
    def heads(self) -> int:
        return self.attentions.shape[1]

    @property
    def length(self) -> int:
        return len(self.ids)


def encoder_ids(encoder: LiveEncoder, text: str, max_tokens: int = MAX_ENCODER_TOKENS) -> tuple[list[int], bool]:
    """[CLS] + the text's word pieces + [SEP], cut to `max_tokens` as the tokenizer's own truncation cuts
    (the end of the text goes, [SEP] stays). Returns (ids, whether anything was cut)."""
    if max_tokens < 2:
        raise ValueError("the encoder needs room for [CLS] and [SEP]")
    with encoder.tokenizing() as tok:   # the fast tokenizer is shared by every session's thread
        full = tok(text)["input_ids"]
        sep = tok.sep_token_id
    if len(full) <= max_tokens:
        return list(full), False
    return list(full[:max_tokens - 1]) + [sep], True


def capture_encoder(encoder: LiveEncoder, text: str, max_tokens: int = MAX_ENCODER_TOKENS) -> EncoderCapture:
    """MiniLM's pass over `text`, keeping every attention map and hidden state."""
    if not text.strip():
        raise ValueError("the text is empty")
    ids, truncated = encoder_ids(encoder, text, max_tokens)
    with encoder.tokenizing() as tok:
        tokens = tok.convert_ids_to_tokens(ids)
    model = encoder.model
    if model.config._attn_implementation != "eager":
        # Switching the kernel here would change the model every other session is using at this moment.
        raise RuntimeError("the shared encoder must be loaded with eager attention to return attention weights")
    with model_work():   # the CPU gate, and inference mode
        out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    output_attentions=True, output_hidden_states=True)
        attentions = torch.stack(out.attentions)[:, 0].float().numpy()
        hidden = torch.stack(out.hidden_states)[:, 0].float().numpy()
    attentions.flags.writeable = False
    hidden.flags.writeable = False
    return EncoderCapture(ids=ids, tokens=list(tokens), attentions=attentions, hidden_states=hidden,
                          truncated=truncated)



@dataclass(frozen=True)
class EncoderCard:
    """Facts about the live encoder, read from its config and weights (never typed in)."""
    architecture: str
    layers: int
    heads: int
    d_model: int
    vocab_size: int
    parameters: int
    max_positions: int


def encoder_card(encoder: LiveEncoder) -> EncoderCard:
    cfg = encoder.model.config
    return EncoderCard(architecture=type(encoder.model).__name__, layers=cfg.num_hidden_layers,
                       heads=cfg.num_attention_heads, d_model=cfg.hidden_size, vocab_size=cfg.vocab_size,
                       parameters=sum(p.numel() for p in encoder.model.parameters()),
                       max_positions=cfg.max_position_embeddings)
