"""SmolLM2 as a pipeline of stages: what each stage computes, how many parameters it holds (read from the
model), and what one real pass looks like there; plus skipping whole blocks, measured.

Indices are 0-based (layers 0..29, positions 0..T-1); pages show them 1-based.

The stages, in the order a token meets them:

    embedding -> 30 x [attn_norm, qkv, rope, attention, o_proj, add_attention, ffn_norm, ffn, add_ffn]
              -> final_norm -> lm_head
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from engine.model.live_model import LiveModel
from engine.model.perplexity import scores_from_logits
from engine.model.traced import Interventions, TracedPass, trace


@dataclass(frozen=True)
class Stage:
    key: str
    title: str
    in_block: bool           # repeated in every block, or once for the whole model
    records: tuple[str, ...]   # the traced names that hold this stage's output
    what: str                # one sentence on what it computes
    kind: str = "io"         # for drawing: "io", "norm", "attention", "ffn" or "add"


STAGES: tuple[Stage, ...] = (
    Stage("embedding", "Token embedding", False, (),
          "Each token id picks one row of the embedding matrix: the stream starts as that row."),
    Stage("attn_norm", "RMSNorm (attention)", True, ("resid_in", "attn_norm_out"),
          "Rescales each token's vector to a fixed root-mean-square size, then multiplies by a learned gain.",
          kind="norm"),
    Stage("qkv", "Q, K, V projections", True, ("q", "k", "v"),
          "Three matrices turn the normalized vector into {heads} query heads and {kv_heads} key and {kv_heads} value "
          "heads of {head_dim} numbers each.",
          kind="attention"),
    Stage("rope", "RoPE", True, ("q_rot", "k_rot"),
          "Rotates pairs of query and key numbers by angles that grow with the position: order enters here.",
          kind="attention"),
    Stage("attention", "Causal softmax", True, ("probs", "head_out"),
          "Each query head scores every earlier key, softmaxes the scores and averages the values of its "
          "key/value head, which {group} query heads share.", kind="attention"),
    Stage("o_proj", "Output projection", True, ("attn_out",),
          "One matrix mixes the {heads} heads' outputs ({heads} x {head_dim} numbers) back into the stream's {d_model} "
          "dimensions.",
          kind="attention"),
    Stage("add_attention", "Add to the stream", True, ("resid_mid",),
          "The attention's output is added to the stream; nothing is overwritten.", kind="add"),
    Stage("ffn_norm", "RMSNorm (FFN)", True, ("ffn_norm_out",),
          "The second norm of the block, with its own learned gain.", kind="norm"),
    Stage("ffn", "SwiGLU FFN", True, ("gate", "up", "act", "product", "down"),
          "Two matrices widen to {ffn_dim:,}; SiLU(gate) times up picks what passes; a third narrows back to {d_model}.",
          kind="ffn"),
    Stage("add_ffn", "Add to the stream", True, ("resid_out",),
          "The FFN's output is added to the stream, which goes on to the next block.", kind="add"),
    Stage("final_norm", "Final RMSNorm", False, (),
          "One last norm of the stream after block {layers}.", kind="norm"),
    Stage("lm_head", "LM head (tied)", False, (),
          "The embedding matrix again, used backwards: one score (logit) per vocabulary token, then softmax."),
)
STAGE_KEYS = tuple(s.key for s in STAGES)


def _sizes(lm: LiveModel) -> dict[str, int]:
    card = lm.card
    return dict(heads=card.heads, kv_heads=card.kv_heads, head_dim=card.head_dim, d_model=card.d_model,
                ffn_dim=card.ffn_dim, layers=card.layers, group=card.heads // card.kv_heads)


def describe(stage: Stage, lm: LiveModel) -> str:
    """The stage's sentence with the model's own sizes filled in (read from its config, never typed)."""
    return stage.what.format(**_sizes(lm))


def gpt2_note(key: str, lm: LiveModel) -> str | None:
    """What GPT-2 did at this stage, if the design changed here; SmolLM2's sizes filled in from its config."""
    note = GPT2_NOTES.get(key)
    return note.format(**_sizes(lm)) if note else None
BLOCK_STAGES = tuple(s.key for s in STAGES if s.in_block)
RECORD_ALL = frozenset(name for s in STAGES for name in s.records) | {"final_norm"}

# What the original GPT-2 (Radford et al. 2019) did at the places where LLaMA-style models changed the design.
GPT2_NOTES = {
    "attn_norm": "GPT-2 used LayerNorm: it subtracts the mean first and adds a learned bias after the gain.",
    "ffn_norm": "GPT-2 used LayerNorm here too (mean subtracted, bias added).",
    "final_norm": "GPT-2 also ends with a final LayerNorm, added in GPT-2 when the norms moved to the block inputs.",
    "embedding": "GPT-2 added a learned position vector (one per position, 1,024 of them) to each token's "
                 "embedding here; SmolLM2 adds nothing and rotates queries and keys instead (RoPE).",
    "rope": "GPT-2 had no rotation: position came only from the learned position vectors added at the input.",
    "qkv": "GPT-2 gave every query head its own key and value head (12 of each in the small model); SmolLM2's "
           "{heads} query heads share {kv_heads} key/value heads (grouped-query attention).",
    "ffn": "GPT-2's FFN had two matrices and a GELU: up to 4 x d_model, GELU, down. SwiGLU adds a third "
           "(gated) matrix.",
}

_PATTERNS = (   # parameter name -> stage; lm_head.weight appears only if it is not tied
    (r"model\.embed_tokens\.weight", "embedding"),
    (r"model\.layers\.\d+\.input_layernorm\.weight", "attn_norm"),
    (r"model\.layers\.\d+\.self_attn\.[qkv]_proj\.(weight|bias)", "qkv"),
    (r"model\.layers\.\d+\.self_attn\.o_proj\.(weight|bias)", "o_proj"),
    (r"model\.layers\.\d+\.post_attention_layernorm\.weight", "ffn_norm"),
    (r"model\.layers\.\d+\.mlp\.(gate|up|down)_proj\.(weight|bias)", "ffn"),
    (r"model\.norm\.weight", "final_norm"),
    (r"lm_head\.weight", "lm_head"),
)


@dataclass(frozen=True)
class ParameterSplit:
    """Parameters per stage, read from the model's own parameter list (a tied weight is listed once)."""
    per_stage: dict[str, int]         # whole model, every layer summed
    per_layer: dict[str, int]         # one block's share of the in-block stages
    layers: int
    total: int                        # the sum of per_stage
    model_total: int                  # sum of numel over model.parameters(): the model's own count
    tied: bool                        # the LM head is the embedding matrix itself

    @property
    def adds_up(self) -> bool:
        return self.total == self.model_total


def parameter_split(lm: LiveModel) -> ParameterSplit:
    """Assign every parameter of the model to one stage by its name; a name no stage claims is an error."""
    per_stage = dict.fromkeys(STAGE_KEYS, 0)
    layer_zero = dict.fromkeys(STAGE_KEYS, 0)
    for name, p in lm.model.named_parameters():      # remove_duplicate: a tied matrix is listed once
        stage = next((key for pattern, key in _PATTERNS if re.fullmatch(pattern, name)), None)
        if stage is None:
            raise ValueError(f"no stage claims the parameter {name!r}")
        per_stage[stage] += p.numel()
        if name.startswith("model.layers.0."):
            layer_zero[stage] += p.numel()
    tied = lm.model.lm_head.weight is lm.model.model.embed_tokens.weight
    return ParameterSplit(per_stage=per_stage, per_layer={k: layer_zero[k] for k in BLOCK_STAGES},
                          layers=lm.model.config.num_hidden_layers, total=sum(per_stage.values()),
                          model_total=sum(p.numel() for p in lm.model.parameters()), tied=tied)


def stage_pass(lm: LiveModel, ids: list[int], layer: int) -> TracedPass:
    """Every stage's output at block `layer` (and the final norm), from one traced pass."""
    return trace(lm, list(ids), record=RECORD_ALL, layers=[layer])


GLIMPSE_CHANNELS = 48   # the first channels of a [T, d] tensor shown in a glimpse; the rest are in the CSV


@dataclass(frozen=True, eq=False)
class StageView:
    """One stage of one pass, seen at one token: its tensors' shapes, a small matrix of its real values, and the
    token's output vector there (what the next stage receives)."""
    key: str
    layer: int
    position: int
    shapes: tuple[tuple[str, tuple[int, ...]], ...]    # (tensor name, full shape)
    matrix: np.ndarray | None        # 2-D real values for a heatmap (None for the LM head: a top list instead)
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    token_output: np.ndarray         # the token's output vector at this stage
    top_ids: tuple[int, ...] = ()    # LM head only: the most probable next tokens, and their probabilities
    top_probs: tuple[float, ...] = ()


def stage_view(lm: LiveModel, tp: TracedPass, key: str, position: int, labels: list[str]) -> StageView:
    """What stage `key` did at the traced layer, with the token at `position` singled out.

    `labels` are readable token texts (row labels of per-token matrices)."""
    layer = tp.layers[0]
    length = len(tp.ids)
    if not 0 <= position < length:
        raise IndexError(f"position {position} out of range 0..{length - 1}")
    at = lambda name: tp.at(name, layer)    # noqa: E731 - a short reader for this one pass
    channels = tuple(f"d{i + 1}" for i in range(GLIMPSE_CHANNELS))
    tokens = tuple(f"{i + 1} {t}" for i, t in enumerate(labels))

    def per_token(name: str, tensor: np.ndarray, output: np.ndarray | None = None) -> StageView:
        return StageView(key, layer, position, ((name, tensor.shape),), tensor[:, :GLIMPSE_CHANNELS], tokens,
                         channels, tensor[position] if output is None else output)

    if key == "embedding":
        with torch.inference_mode():
            rows = lm.model.model.embed_tokens.weight[torch.tensor(tp.ids)].numpy().copy()
        return per_token("embedding rows", rows)
    if key == "attn_norm":
        return per_token("attn_norm_out", at("attn_norm_out"))
    if key == "qkv":
        q, k, v = at("q"), at("k"), at("v")
        matrix = np.concatenate([q[:, position], k[:, position], v[:, position]])
        rows = tuple(f"{n}{h + 1}" for n, t in (("q", q), ("k", k), ("v", v)) for h in range(t.shape[0]))
        return StageView(key, layer, position, (("q", q.shape), ("k", k.shape), ("v", v.shape)), matrix, rows,
                         tuple(f"d{i + 1}" for i in range(q.shape[-1])), q[:, position].reshape(-1))
    if key == "rope":
        q, k, qr, kr = at("q"), at("k"), at("q_rot"), at("k_rot")
        matrix = np.stack([q[0, position], qr[0, position], k[0, position], kr[0, position]])
        return StageView(key, layer, position, (("q_rot", qr.shape), ("k_rot", kr.shape)), matrix,
                         ("q1 before", "q1 after RoPE", "k1 before", "k1 after RoPE"),
                         tuple(f"d{i + 1}" for i in range(q.shape[-1])), qr[:, position].reshape(-1))
    if key == "attention":
        probs, out = at("probs"), at("head_out")
        return StageView(key, layer, position, (("probs", probs.shape), ("head_out", out.shape)),
                         probs[:, position, :position + 1], tuple(f"head {h + 1}" for h in range(probs.shape[0])),
                         tokens[:position + 1], out[:, position].reshape(-1))
    if key in ("o_proj", "add_attention", "ffn_norm", "add_ffn"):
        name = {"o_proj": "attn_out", "add_attention": "resid_mid", "ffn_norm": "ffn_norm_out",
                "add_ffn": "resid_out"}[key]
        return per_token(name, at(name))
    if key == "ffn":
        parts = [("gate", at("gate")), ("SiLU(gate)", at("act")), ("up", at("up")), ("product", at("product"))]
        down = at("down")
        matrix = np.stack([t[position, :GLIMPSE_CHANNELS] for _, t in parts])
        return StageView(key, layer, position, tuple((n, t.shape) for n, t in parts) + (("down", down.shape),),
                         matrix, tuple(n for n, _ in parts), channels, down[position])
    if key == "final_norm":
        return per_token("final_norm", tp.final_norm)
    if key == "lm_head":
        logits = tp.logits
        z = logits[position].astype(np.float64)
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[:10]
        return StageView(key, layer, position, (("logits", logits.shape),), None, (), (), logits[position],
                         top_ids=tuple(int(i) for i in top), top_probs=tuple(float(probs[i]) for i in top))
    raise KeyError(f"no stage {key!r}; stages: {list(STAGE_KEYS)}")


def model_logits(lm: LiveModel, ids: list[int]) -> np.ndarray:
    """The model's own logits from its own forward (not the traced path): what the trace is checked against."""
    from engine.model.forward import forward
    return forward(lm, list(ids)).logits


@dataclass(frozen=True)
class SkipBlocks:
    """A weight transform that removes whole blocks: their attention output and FFN output matrices become
    zero, so the block adds nothing to the stream and the stream passes through it unchanged.

    A frozen dataclass, so two equal skips are equal keys of the shared perplexity cache."""
    layers: frozenset[int]

    def __call__(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        match = re.fullmatch(r"layers\.(\d+)\.(self_attn\.o_proj|mlp\.down_proj)", name)
        if match and int(match.group(1)) in self.layers:
            return torch.zeros_like(weight)
        return weight


def block_interventions(skip: frozenset[int] = frozenset(), exit_layer: int | None = None) -> Interventions:
    """Skip the given blocks and/or stop after `exit_layer` blocks; the plain model when both are empty."""
    return Interventions(weight_transform=SkipBlocks(frozenset(skip)) if skip else None, exit_layer=exit_layer)


@dataclass(frozen=True, eq=False)
class Outcome:
    """What one (possibly changed) model makes of a text."""
    interventions: Interventions
    next_probs: np.ndarray     # [vocab] the next-token distribution after the whole text
    token_nll: np.ndarray      # [T - 1] nats
    token_top1: np.ndarray     # [T - 1] bool

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.token_nll.mean())) if self.token_nll.size else float("nan")

    @property
    def top1_accuracy(self) -> float:
        return float(self.token_top1.mean()) if self.token_top1.size else float("nan")


def outcome(lm: LiveModel, ids: list[int], interventions: Interventions) -> Outcome:
    """One pass: the next-token distribution and the per-token scores (the perplexity), from the same logits."""
    logits = trace(lm, list(ids), interventions=interventions).logits
    nll, top1 = scores_from_logits(ids, logits)
    z = logits[-1].astype(np.float64)
    z = np.exp(z - z.max())
    return Outcome(interventions=interventions, next_probs=z / z.sum(), token_nll=nll, token_top1=top1)
