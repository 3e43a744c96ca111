"""Real gradients of SmolLM2 without touching it: one step on a private copy of its last block, per-layer
gradient norms through a gradient-enabled view of the shared weights, and a loss-surface slice.

What is trained, and why it is honest: the last transformer block (two RMSNorm gains, four attention matrices,
three FFN matrices: about 3.5 M of the 134.5 M parameters) is deep-copied, so updating it never writes the
shared weights. Everything below it is frozen, so its output for a sentence, the input of the last block, is
computed once with the shared model and reused; above the block, the shared final norm and the tied lm_head are
read, never written. The loss this path computes with the copied block unchanged is the model's own loss on
the sentence (a test holds it to 1e-4), so "before" is the real model, and "after" is the real model with
one block moved by one gradient step.

Gradient norms for every layer need a backward pass through all of SmolLM2. The shared module's parameters
have autograd off and must stay that way, so a second module is built on the very same tensors (no copy, as
the eager view in engine.model.live_model is) with autograd on; `torch.autograd.grad` returns the gradients without
storing them on any parameter, and nothing is ever written to a weight.
"""
from __future__ import annotations

import copy
import functools
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.training.lab import gated_training

MAX_STEPS = 20
TOP_INPUTS = 64


@dataclass(frozen=True, eq=False)
class TopInput:
    """A sentence's token ids and the frozen part's output for it: the input of the last block, [1, T, d].
    Shared by every caller (cached): read it, never write it."""
    ids: tuple[int, ...]
    hidden: torch.Tensor


def top_input(lm: LiveModel, ids: list[int]) -> TopInput:
    """One pass of the shared model; hidden_states[-2] is the last block's input (the last entry is taken after
    the final norm). Kept for the last TOP_INPUTS sentences: moving the learning rate needs no new pass."""
    if len(ids) < 2:
        raise ValueError("a loss needs at least two tokens: the first is only context")
    return _top_input(lm, tuple(ids))


@functools.lru_cache(maxsize=TOP_INPUTS)   # [T, 576] floats each: 64 sentences of 64 tokens are under 10 MB
def _top_input(lm: LiveModel, ids: tuple[int, ...]) -> TopInput:
    with model_work():
        hidden = lm.model(torch.tensor([ids]), output_hidden_states=True, use_cache=False).hidden_states[-2]
    with torch.inference_mode(False):   # a clone made outside inference mode is a normal tensor autograd can use
        return TopInput(ids=tuple(ids), hidden=hidden.clone())


class LastBlock:
    """A private, trainable copy of SmolLM2's last block, run on top of the frozen rest of the model."""

    def __init__(self, lm: LiveModel):
        self.lm = lm
        self.index = len(lm.model.model.layers) - 1
        with gated_training():   # not under inference mode: its tensors could never need gradients
            self.block = copy.deepcopy(lm.model.model.layers[self.index])
        self.block.requires_grad_(True)
        self.names = [name for name, _ in self.block.named_parameters()]
        self.params = [p for _, p in self.block.named_parameters()]

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.params)

    def loss(self, top: TopInput) -> torch.Tensor:
        """Mean next-token loss of the sentence with this block (grad-enabled if the caller allows it)."""
        return self.losses(top).mean()

    def losses(self, top: TopInput) -> torch.Tensor:
        """Per-token losses [T - 1] of the sentence: -ln p(token t + 1 | tokens up to t)."""
        hidden = top.hidden
        positions = torch.arange(hidden.shape[1])[None]
        cos_sin = self.lm.model.model.rotary_emb(hidden, positions)
        out = self.block(hidden, attention_mask=None, position_embeddings=cos_sin, position_ids=positions)
        logits = F.linear(self.lm.model.model.norm(out), self.lm.model.lm_head.weight)[0, :-1]
        return F.cross_entropy(logits, torch.tensor(top.ids[1:]), reduction="none")

    def token_losses(self, top: TopInput) -> np.ndarray:
        with gated_training(), torch.no_grad():
            return self.losses(top).numpy().copy()

    def gradient(self, top: TopInput) -> tuple[float, list[torch.Tensor]]:
        with gated_training():
            loss = self.loss(top)
            grads = torch.autograd.grad(loss, self.params)
        return float(loss.detach()), [g.detach() for g in grads]

    def value(self, top: TopInput) -> float:
        with gated_training(), torch.no_grad():
            return float(self.loss(top))

    def shift(self, directions: list[torch.Tensor], scale: float) -> None:
        """Move this copy's weights by scale * direction (the shared model is not involved)."""
        with torch.no_grad():
            for p, d in zip(self.params, directions):
                p.add_(d, alpha=scale)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def restore(self, weights: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, w in zip(self.params, weights):
                p.copy_(w)


@dataclass(frozen=True, eq=False)
class GradientSteps:
    """Plain gradient descent on the last block: theta <- theta - lr * grad, `steps` times on one sentence."""
    lr: float
    trained_parameters: int
    block_index: int                 # 0-based
    losses: np.ndarray               # [steps + 1] on the sentence trained on, before each step and after the last
    token_losses_before: np.ndarray  # [T - 1] per token of the sentence, before the first step
    token_losses_after: np.ndarray   # [T - 1] after the last step
    other_losses: np.ndarray         # [steps + 1] on the other sentence at the same moments
    grad_norms: np.ndarray           # [steps] global gradient norm over the block at each step
    matrix_names: tuple[str, ...]
    matrix_grad_norms: np.ndarray    # [matrices] at the first step
    matrix_weight_norms: np.ndarray  # [matrices] the block's real weights

    @property
    def predicted_first_change(self) -> float:
        """First-order Taylor: a step -lr * g changes the loss by about -lr * |g|^2."""
        return -self.lr * float(self.grad_norms[0]) ** 2


@torch.inference_mode(False)
def gradient_steps(lm: LiveModel, ids: list[int], other_ids: list[int], lr: float, steps: int = 1) -> GradientSteps:
    if not 1 <= steps <= MAX_STEPS or not lr > 0:
        raise ValueError(f"1-{MAX_STEPS} steps and a positive learning rate")
    top, other = top_input(lm, ids), top_input(lm, other_ids)
    block = LastBlock(lm)
    losses, others, norms = [], [block.value(other)], []
    tokens_before = block.token_losses(top)
    weight_norms = np.array([float(p.detach().norm()) for p in block.params])   # the real weights, before any step
    first = None
    for _ in range(steps):
        loss, grads = block.gradient(top)
        losses.append(loss)
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        first = first or grads
        block.shift(grads, -lr)
        others.append(block.value(other))
    tokens_after = block.token_losses(top)
    losses.append(float(tokens_after.mean()))
    return GradientSteps(lr=lr, trained_parameters=block.parameters, block_index=block.index,
                         losses=np.array(losses), token_losses_before=tokens_before, token_losses_after=tokens_after,
                         other_losses=np.array(others), grad_norms=np.array(norms),
                         matrix_names=tuple(block.names),
                         matrix_grad_norms=np.array([float(g.norm()) for g in first]),
                         matrix_weight_norms=weight_norms)


@dataclass(frozen=True, eq=False)
class LossSlice:
    """The loss along theta - alpha * g (alpha in learning-rate units) and, for 2-D, + beta * r, where r is a
    random direction with the same norm as g in every weight matrix."""
    alphas: np.ndarray        # [A]
    betas: np.ndarray         # [B] (a single 0 for a 1-D slice)
    losses: np.ndarray        # [B, A]
    grad_norm: float
    loss_at_start: float


@torch.inference_mode(False)
def loss_slice(lm: LiveModel, ids: list[int], alphas: np.ndarray, betas: np.ndarray | None = None, seed: int = 0,
               on_row=lambda done, total: None, should_stop=lambda: False) -> LossSlice:
    """Loss of the sentence with the last block moved to each grid point; the shared model is never moved."""
    top = top_input(lm, ids)
    block = LastBlock(lm)
    start_loss, grads = block.gradient(top)
    g = torch.Generator().manual_seed(int(seed))
    randoms = []
    for grad in grads:   # per matrix, the random direction gets the gradient's norm ("filter-normalised" in spirit)
        r = torch.randn(grad.shape, generator=g)
        randoms.append(r * (grad.norm() / r.norm().clamp_min(1e-12)))
    betas = np.zeros(1) if betas is None else np.asarray(betas, dtype=float)
    alphas = np.asarray(alphas, dtype=float)
    origin = block.snapshot()
    grid = np.full((len(betas), len(alphas)), np.nan)
    for i, beta in enumerate(betas):
        if should_stop():
            break
        for j, alpha in enumerate(alphas):
            block.restore(origin)
            block.shift(grads, -float(alpha))
            if beta:
                block.shift(randoms, float(beta))
            grid[i, j] = block.value(top)
        on_row(i + 1, len(betas))
    norm = float(torch.linalg.vector_norm(torch.stack([gr.norm() for gr in grads])))
    return LossSlice(alphas=alphas, betas=betas, losses=grid, grad_norm=norm, loss_at_start=start_loss)


# --- per-layer gradient norms over the whole model --------------------------------------------------------

_views: dict[int, object] = {}
_views_lock = threading.Lock()


def gradient_view(lm: LiveModel):
    """SmolLM2 again on the same weight tensors (no copy), with autograd on: for backward passes only."""
    from transformers import LlamaForCausalLM

    with _views_lock:
        view = _views.get(id(lm))
        if view is None:
            config = lm.model.config.__class__.from_dict(lm.model.config.to_dict())
            config._attn_implementation = "sdpa"
            with torch.device("meta"):
                view = LlamaForCausalLM(config)
            view.load_state_dict(lm.model.state_dict(), assign=True)   # new Parameter objects, shared storage
            view.model.rotary_emb = lm.model.model.rotary_emb
            view.tie_weights()
            view.eval()
            view.requires_grad_(True)
            _views.clear()   # one model per process; a reloaded one replaces the old view
            _views[id(lm)] = view
        return view


@dataclass(frozen=True, eq=False)
class LayerGradients:
    """Gradient norms of one sentence's loss, per block and part; index i is block i + 1."""
    loss: float
    attention: np.ndarray      # [layers] norm over q, k, v, o
    ffn: np.ndarray            # [layers] norm over gate, up, down
    norms: np.ndarray          # [layers] norm over the two RMSNorm gains
    attention_weights: np.ndarray   # [layers] norm of the weights themselves, for relative sizes
    ffn_weights: np.ndarray
    embedding: float           # the tied embedding / lm_head matrix
    final_norm: float


@torch.inference_mode(False)
def layer_gradients(lm: LiveModel, ids: list[int]) -> LayerGradients:
    if len(ids) < 2:
        raise ValueError("a loss needs at least two tokens")
    view = gradient_view(lm)
    named = list(view.named_parameters())
    with gated_training():
        tensor = torch.tensor([ids])
        loss = view(tensor, labels=tensor, use_cache=False).loss
        grads = torch.autograd.grad(loss, [p for _, p in named])
    layers = lm.card.layers
    squares = {kind: np.zeros(layers) for kind in ("attention", "ffn", "norms", "attention_w", "ffn_w")}
    embedding = final = 0.0
    for (name, p), grad in zip(named, grads):
        sq, wsq = float(grad.pow(2).sum()), float(p.detach().pow(2).sum())
        parts = name.split(".")
        if parts[1] == "layers":
            i = int(parts[2])
            kind = {"self_attn": "attention", "mlp": "ffn"}.get(parts[3], "norms")
            squares[kind][i] += sq
            if kind != "norms":
                squares[kind + "_w"][i] += wsq
        elif "embed_tokens" in name:
            embedding += sq
        else:
            final += sq
    root = {k: np.sqrt(v) for k, v in squares.items()}
    return LayerGradients(loss=float(loss.detach()), attention=root["attention"], ffn=root["ffn"],
                          norms=root["norms"], attention_weights=root["attention_w"], ffn_weights=root["ffn_w"],
                          embedding=float(np.sqrt(embedding)), final_norm=float(np.sqrt(final)))
