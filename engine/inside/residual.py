"""The residual stream of SmolLM2, read layer by layer: its size, the logit lens, a token's probability and
rank through the layers, direct logit attribution per layer and per head, and early exit.

Indices are 0-based (layers 0..29, heads 0..8, positions 0..T-1); pages show them 1-based.

The stream is a running sum. Each block adds what its attention and its FFN write, so after the last block

    x_final = embedding + sum over layers of (attn_out + ffn_out)

SmolLM2 ties its LM head to its embedding matrix, and the logit lens reads any layer's stream the way the last
one is read: final RMSNorm, then the tied head. The lens after the last layer is therefore the model's own
output, and the lens after layer L is exactly what the model predicts when it exits after L layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.inside.norms import rms
from engine.model.perplexity import Perplexity, perplexity
from engine.model.traced import Interventions, TracedPass, trace

STREAM_NAMES = frozenset({"resid_out", "attn_out", "down", "head_out", "logit_lens_last", "final_norm"})


def stream_pass(lm: LiveModel, ids: list[int]) -> TracedPass:
    """One pass keeping what the stream pages read: every layer's stream and writes, each head's output, the
    final norm, and the lens at the last position (cheap: one lm_head row per layer)."""
    return trace(lm, list(ids), record=STREAM_NAMES)


def lens_grid_pass(lm: LiveModel, ids: list[int]) -> TracedPass:
    """The logit lens at every position and layer: an lm_head product per (layer, position), about 1.2 s per
    64 tokens on one core, so pages run it as a job."""
    return trace(lm, list(ids), record={"logit_lens"})


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@dataclass(frozen=True, eq=False)
class StreamSizes:
    """How large the stream is after each layer and how large each layer's two writes are, at one position."""
    position: int
    embedding_rms: float
    stream_rms: np.ndarray     # [layers] RMS of the stream after each block
    attention_rms: np.ndarray  # [layers] RMS of what each block's attention added
    ffn_rms: np.ndarray        # [layers] RMS of what each block's FFN added


def stream_sizes(tp: TracedPass, position: int) -> StreamSizes:
    stream, attn, ffn = tp["resid_out"][:, position], tp["attn_out"][:, position], tp["down"][:, position]
    embedding = stream[0] - attn[0] - ffn[0]   # what entered block 1: the token's embedding row
    return StreamSizes(position=position, embedding_rms=float(rms(embedding)), stream_rms=rms(stream),
                       attention_rms=rms(attn), ffn_rms=rms(ffn))


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One token's fate at the last position, read through the lens after every layer."""
    token_id: int
    probability: np.ndarray    # [layers] its probability after each block
    rank: np.ndarray           # [layers] 1 = the lens's top guess
    top_ids: np.ndarray        # [layers] the lens's top guess after each block
    top_probability: np.ndarray  # [layers]


def trajectory(tp: TracedPass, token_id: int) -> Trajectory:
    """Probability and rank of `token_id` as the next token after the text, layer by layer (last position)."""
    logits = tp.lens.last_logits.astype(np.float64)                  # [layers, vocab]
    probs = softmax(logits)
    target = logits[:, token_id][:, None]
    rank = 1 + (logits > target).sum(-1)
    return Trajectory(token_id=int(token_id), probability=probs[:, token_id], rank=rank,
                      top_ids=probs.argmax(-1), top_probability=probs.max(-1))


@dataclass(frozen=True, eq=False)
class Attribution:
    """Direct logit attribution at the last position: what each part wrote into the stream, read along the
    (final-norm-scaled) unembedding direction of a token, or of one token minus another.

    The final norm divides the whole stream by one number, its RMS; holding that number fixed makes the logit
    a sum over the stream's parts, so the parts add up to the model's own logit (up to float rounding)."""
    token_id: int
    versus_id: int | None       # None: the logit of token_id; else the logit difference token_id - versus_id
    embedding: float
    heads: np.ndarray           # [layers, heads] each attention head's share (W_O's slice for that head)
    ffn: np.ndarray             # [layers]
    scale: float                # the final norm's divisor sqrt(mean(x^2) + eps), held fixed
    model_value: float          # the model's own logit (or logit difference)

    @property
    def attention(self) -> np.ndarray:
        """[layers] each layer's attention, the sum over its heads."""
        return self.heads.sum(-1)

    @property
    def total(self) -> float:
        return float(self.embedding + self.heads.sum() + self.ffn.sum())


def attribution(lm: LiveModel, tp: TracedPass, token_id: int, versus_id: int | None = None) -> Attribution:
    """Split the last position's logit for `token_id` (minus `versus_id`'s, if given) over the embedding, every
    head of every layer (grouped-query attention: head h reads KV head h // 3, but writes through its own 64
    columns of W_O, so each of the 9 query heads has its own share) and every FFN."""
    model = lm.model.model
    position = len(tp.ids) - 1
    layers, heads, _, head_dim = tp["head_out"].shape
    with model_work():
        unembed = lm.model.lm_head.weight
        direction = unembed[token_id] - (unembed[versus_id] if versus_id is not None else 0.0)
        stream = torch.from_numpy(np.array(tp["resid_out"][-1, position]))
        eps = model.norm.variance_epsilon
        scale = float(torch.sqrt(stream.pow(2).mean() + eps))
        read32 = direction * model.norm.weight / scale                         # [d]: how one unit of stream counts
        read = read32.to(torch.float64)
        head_out = torch.from_numpy(np.array(tp["head_out"][:, :, position])).to(torch.float64)   # [L, H, hd]
        per_head = np.zeros((layers, heads))
        for layer in range(layers):
            w_o = model.layers[layer].self_attn.o_proj.weight                      # [d, H * hd], the shared weight
            by_head = (read32 @ w_o).to(torch.float64).view(heads, head_dim)       # W_O^T read, per head
            per_head[layer] = (by_head * head_out[layer]).sum(-1).numpy()
        down = torch.from_numpy(np.array(tp["down"][:, position])).to(torch.float64)
        embedding = model.embed_tokens.weight[tp.ids[position]].to(torch.float64)
        ffn = (down @ read).numpy()
        embedding_part = float(embedding @ read)
    logits = tp.logits[position].astype(np.float64)
    value = logits[token_id] - (logits[versus_id] if versus_id is not None else 0.0)
    return Attribution(token_id=int(token_id), versus_id=None if versus_id is None else int(versus_id),
                       embedding=embedding_part, heads=per_head, ffn=ffn, scale=scale, model_value=float(value))


@dataclass(frozen=True, eq=False)
class ExitSweep:
    """Perplexity of a text when the model exits after L blocks, for L = 0 (embedding only) .. all layers."""
    exit_layers: tuple[int, ...]
    perplexities: tuple[float, ...]
    top1: tuple[float, ...]
    complete: bool              # False when stopped before every exit layer was measured


def exit_perplexity(lm: LiveModel, ids: list[int], exit_layer: int) -> Perplexity:
    """The text's perplexity when only the first `exit_layer` blocks run (cached process-wide)."""
    layers = lm.model.config.num_hidden_layers
    return perplexity(lm, ids, Interventions(exit_layer=None if exit_layer >= layers else int(exit_layer)))


def exit_sweep(lm: LiveModel, ids: list[int], on_step=lambda done, total, layer: None,
               should_stop=lambda: False) -> ExitSweep:
    """exit_perplexity for every exit layer, deepest last; one pass each (shallow exits are cheaper)."""
    layers = lm.model.config.num_hidden_layers
    done: list[tuple[int, Perplexity]] = []
    for layer in range(layers + 1):
        if should_stop():
            break
        done.append((layer, exit_perplexity(lm, ids, layer)))
        on_step(len(done), layers + 1, layer)
    return ExitSweep(exit_layers=tuple(l for l, _ in done), perplexities=tuple(p.perplexity for _, p in done),
                     top1=tuple(p.top1_accuracy for _, p in done), complete=len(done) == layers + 1)
