"""One forward pass of the shared model, returning exactly what the caller asked for as numpy arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel


@dataclass(frozen=True)
class ForwardPass:
    ids: list[int]
    logits: np.ndarray                    # [tokens, vocab], float32
    attentions: np.ndarray | None = None  # [layers, heads, tokens, tokens]; each row sums to 1
    hidden_states: np.ndarray | None = None  # [layers + 1, tokens, d_model]; the last is after the final norm


def forward(lm: LiveModel, ids: list[int], attentions: bool = False, hidden_states: bool = False) -> ForwardPass:
    if not ids:
        raise ValueError("a forward pass needs at least one token")
    model = lm.eager if attentions else lm.model  # SDPA returns no attention weights
    with model_work():
        out = model(torch.tensor([ids]), output_attentions=attentions,
                    output_hidden_states=hidden_states, use_cache=False)
    return ForwardPass(
        ids=list(ids),
        logits=out.logits[0].float().numpy(),
        attentions=torch.stack(out.attentions)[:, 0].numpy() if attentions else None,
        hidden_states=torch.stack(out.hidden_states)[:, 0].numpy() if hidden_states else None,
    )
