"""The traced forward: one plain-torch pass of SmolLM2 over the shared weights, recording what is asked for.

Every "inside the model" page reads this one path instead of hooking the shared model. It reads the weights
as tensors (never registers a hook, never writes a weight or buffer) and takes interventions as arguments:

    tp = trace(lm, ids, record={"probs", "resid_out"}, layers=[3, 14])
    tp["probs"]            # [2, heads, T, T], layers 3 and 14 in that order
    tp.at("probs", 14)     # [heads, T, T]
    trace(lm, ids, interventions=Interventions(rope=False)).logits
    Interventions(ffn_product_transform=f)   # f(layer, [T, ffn_dim] act(gate) * up) -> the product down_proj reads

Indices are 0-based (layers 0..29, heads 0..8, neurons 0..1535). Per-layer results are numpy float32 arrays
stacked along a first axis in the order of `layers`; every array is read-only, because results are cached
and shared by every session.

Shapes, T tokens: "resid_in", "attn_norm_out", "attn_out", "resid_mid", "ffn_norm_out", "down",
"resid_out" [T, d_model]; "q", "q_rot" [heads, T, head_dim]; "k", "v", "k_rot" [kv_heads, T, head_dim]
(kv_heads = `kv_groups` when the KV heads are pooled); "scores", "probs" [heads, T, T] (scores scaled by
1/sqrt(head_dim), -inf where masked); "head_out" [heads, T, head_dim] (before o_proj); "gate", "up", "act",
"product" [T, ffn_dim]. Global: "final_norm" [T, d_model]; "logit_lens" (every position) or
"logit_lens_last" (the last position only, far cheaper), see `LogitLens`.

Attention runs the fused kernel (the call the model's own SDPA attention makes, so an untraced pass equals
the model bit for bit) except in layers that record "scores" or "probs", which form them explicitly as the
eager module does. The two agree to float rounding (about 1e-6 relative), not bit for bit: to compare two
passes exactly, let both record the same names in the same layers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

ATTENTION_NAMES = ("resid_in", "attn_norm_out", "q", "k", "v", "q_rot", "k_rot", "scores", "probs", "head_out",
                   "attn_out", "resid_mid")
FFN_NAMES = ("ffn_norm_out", "gate", "up", "act", "product", "down", "resid_out")
LAYER_NAMES = frozenset(ATTENTION_NAMES + FFN_NAMES)
GLOBAL_NAMES = frozenset({"final_norm", "logit_lens", "logit_lens_last"})
ACTIVATIONS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = MappingProxyType(
    {"silu": F.silu, "relu": F.relu, "gelu": F.gelu})
NORMS = frozenset({"attention", "ffn", "final"})
LENS_TOP_K = 10
LENS_ROWS = 256   # lens rows per lm_head product: 256 x 49,152 floats is 50 MB

WeightTransform = Callable[[str, torch.Tensor], torch.Tensor]
ProductTransform = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Interventions:
    """Changes to one pass. Every default leaves the model as it is; all fields are hashable.

    weight_transform(name, weight) -> weight is called for each linear as the pass reaches it, with names
    "layers.{i}.self_attn.{q,k,v,o}_proj", "layers.{i}.mlp.{gate,up,down}_proj" and "lm_head" (the tied
    embedding matrix as the output projection; the input embedding lookup is left as is). It must return a new
    tensor of the same shape and never modify its argument: the argument is the shared weight.

    ffn_product_transform(layer, product) -> product is called in every layer with the FFN's [T, ffn_dim]
    product act(gate) * up (after any neuron ablation), just before down_proj reads it; recorded "product" is
    what it returns. Per-token FFN changes (a mixture of experts keeping some neuron groups per token) go
    here. It returns a new tensor of the same shape and leaves its argument as it is.
    """
    causal_mask: bool = True            # False: every position sees every position, later ones too
    rope: bool = True                   # False: no rotation at all, attention is blind to order
    position_shift: int = 0             # positions start here instead of 0; relative positions unchanged
    rope_theta: float | None = None     # RoPE base instead of the model's own (default RoPE only); None = the model's
    position_scale: float = 1.0         # positions multiplied by this (Position Interpolation uses 1/s); 1 = as is
    activation: str = "silu"            # the SwiGLU gate's nonlinearity: "silu", "relu" or "gelu"
    kv_groups: int | None = None        # pool the KV heads into this many (1 = multi-query); None = unchanged
    unit_norm_gain: frozenset[str] = frozenset()         # RMSNorm gains set to 1: "attention", "ffn", "final"
    ablate_heads: frozenset[tuple[int, int]] = frozenset()    # (layer, head): output zeroed before o_proj
    ablate_neurons: frozenset[tuple[int, int]] = frozenset()  # (layer, neuron): act(gate) * up zeroed
    exit_layer: int | None = None       # run only this many layers, then the final norm and lm_head
    weight_transform: WeightTransform | None = None
    ffn_product_transform: ProductTransform | None = None   # (layer, [T, ffn_dim] product) -> new product


@dataclass(frozen=True, eq=False)
class LogitLens:
    """Each recorded layer's residual output read through the final norm and lm_head, as if the model stopped
    there. The full [layers, T, vocab] logits would be 30 x 49,152 floats (5.9 MB) per token, so only what a
    chart reads is kept: the top tokens at each lens position, and the full logits at the last position
    (enough to follow any one token's probability through the layers).

    Cost (tests/bench/bench_traced.py, 64 tokens, 30 layers, one thread): every position adds about 1.2 s
    to a 0.16 s pass, an lm_head product per layer and position; the last position only adds about 0.05 s."""
    positions: tuple[int, ...]  # the positions the top arrays cover: all of them, or only the last
    top_ids: np.ndarray         # [layers, len(positions), LENS_TOP_K] int64, most probable first
    top_probs: np.ndarray       # [layers, len(positions), LENS_TOP_K] float32, softmax over the whole vocabulary
    last_logits: np.ndarray     # [layers, vocab] float32, the last position's logits


@dataclass(frozen=True, eq=False)
class TracedPass:
    """What one traced pass recorded. Arrays are read-only numpy; per-layer ones follow the order of `layers`."""
    ids: tuple[int, ...]
    layers: tuple[int, ...]
    interventions: Interventions
    logits: np.ndarray                          # [T, vocab] float32, always there
    recorded: Mapping[str, np.ndarray]          # per-layer name -> [len(layers), ...]
    final_norm: np.ndarray | None = None        # [T, d_model], the final norm's output
    lens: LogitLens | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.recorded:
            raise KeyError(f"{name!r} was not recorded (recorded: {sorted(self.recorded)})")
        return self.recorded[name]

    def at(self, name: str, layer: int) -> np.ndarray:
        """One layer's array of a per-layer name."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} was not recorded (recorded: {list(self.layers)})")
        return self[name][self.layers.index(layer)]


# --- checking the arguments ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_dim: int


def _shape(lm: LiveModel) -> _Shape:
    cfg = lm.model.config
    return _Shape(layers=cfg.num_hidden_layers, heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
                  head_dim=cfg.hidden_size // cfg.num_attention_heads, ffn_dim=cfg.intermediate_size)


def _check(iv: Interventions, s: _Shape) -> None:
    def fail(msg: str):
        raise ValueError(msg)

    if iv.activation not in ACTIVATIONS:
        fail(f"activation {iv.activation!r} is not one of {sorted(ACTIVATIONS)}")
    if iv.kv_groups is not None and not (isinstance(iv.kv_groups, int) and iv.kv_groups >= 1
                                         and s.kv_heads % iv.kv_groups == 0):
        fail(f"kv_groups must divide the {s.kv_heads} KV heads, got {iv.kv_groups!r}")
    if not (isinstance(iv.position_shift, int) and iv.position_shift >= 0):
        fail(f"position_shift must be a whole number >= 0, got {iv.position_shift!r}")
    theta = iv.rope_theta
    if theta is not None and not (isinstance(theta, (int, float)) and 1 < theta < float("inf")):
        fail(f"rope_theta must be a finite number > 1, got {iv.rope_theta!r}")
    if not (isinstance(iv.position_scale, (int, float)) and 0 < iv.position_scale < float("inf")):
        fail(f"position_scale must be a finite number > 0, got {iv.position_scale!r}")
    if not set(iv.unit_norm_gain) <= NORMS:
        fail(f"unit_norm_gain names unknown norms {sorted(set(iv.unit_norm_gain) - NORMS)}; known: {sorted(NORMS)}")
    for what, pairs, count in (("head", iv.ablate_heads, s.heads), ("neuron", iv.ablate_neurons, s.ffn_dim)):
        for pair in pairs:
            if not (isinstance(pair, tuple) and len(pair) == 2 and 0 <= pair[0] < s.layers and 0 <= pair[1] < count):
                fail(f"cannot ablate {what} {pair!r}: layers are 0..{s.layers - 1}, {what}s 0..{count - 1}")
    if iv.exit_layer is not None and not (isinstance(iv.exit_layer, int) and 0 <= iv.exit_layer <= s.layers):
        fail(f"exit_layer must be 0..{s.layers}, got {iv.exit_layer!r}")


def _layers_to_record(layers: Iterable[int] | None, runs: int, total: int) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(runs))
    chosen = tuple(int(l) for l in layers)
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"layers repeat: {list(chosen)}")
    for l in chosen:
        if not 0 <= l < total:
            raise ValueError(f"layer {l} out of range 0..{total - 1}")
        if l >= runs:
            raise ValueError(f"layer {l} is never reached: the pass exits after {runs} layers")
    return chosen


# --- the pass -----------------------------------------------------------------------------------------------

@dataclass
class _Pass:
    """The state one pass threads through its layers: the plan, and what it has recorded so far."""
    lm: LiveModel
    iv: Interventions
    shape: _Shape
    names: frozenset[str]                 # per-layer names to record
    record_at: frozenset[int]
    lens_at: frozenset[int]
    cos: torch.Tensor | None              # [T, head_dim], None when RoPE is off
    sin: torch.Tensor | None
    taken: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)   # name -> layer -> value
    lens_inputs: dict[int, torch.Tensor] = field(default_factory=dict)        # layer -> its resid_out

    def keep(self, layer: int, name: str, value: torch.Tensor) -> None:
        if layer in self.record_at and name in self.names:
            self.taken.setdefault(name, {})[layer] = value

    def linear(self, x: torch.Tensor, name: str, weight: torch.Tensor) -> torch.Tensor:
        """x @ W.T with W passed through the weight transform; a transformed W lives only for this call."""
        return F.linear(x, self.weight(name, weight))

    def weight(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        transform = self.iv.weight_transform
        if transform is None:
            return weight
        version = weight._version
        changed = transform(name, weight)
        if weight._version != version:   # torch counts in-place writes: the shared model was just changed
            raise RuntimeError(f"weight_transform modified the shared weight {name} in place")
        if not isinstance(changed, torch.Tensor) or changed.shape != weight.shape:
            raise ValueError(f"weight_transform must return a tensor of shape {tuple(weight.shape)} for {name}")
        return changed.to(torch.float32)

    def gain(self, norm: str, weight: torch.Tensor) -> torch.Tensor | None:
        return None if norm in self.iv.unit_norm_gain else weight


def _rms_norm(x: torch.Tensor, gain: torch.Tensor | None, eps: float) -> torch.Tensor:
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return normed if gain is None else gain * normed


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the rotate-half layout the LLaMA checkpoints use: dimension i pairs with i + head_dim/2."""
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


def _rope_tables(lm: LiveModel, positions: torch.Tensor, theta: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, head_dim] for `positions` [1, T]. The model's own rotary module gives them for its own base
    (and any rope scaling it has); another base is computed as that module's default RoPE computes its own,
    inv_freq_i = theta^(-2i/head_dim), so the base the model was trained with yields the same numbers bit for bit."""
    rotary = lm.model.model.rotary_emb
    if theta is None:
        cos, sin = rotary(torch.empty(0), positions)
        return cos[0], sin[0]
    if rotary.rope_type != "default":
        raise ValueError(f"rope_theta replaces default RoPE only; this model uses {rotary.rope_type!r} RoPE")
    dim = 2 * rotary.inv_freq.shape[0]
    inv_freq = 1.0 / (float(theta) ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    angles = positions[0].float()[:, None] * inv_freq[None]
    both = torch.cat((angles, angles), dim=-1)
    return both.cos() * rotary.attention_scaling, both.sin() * rotary.attention_scaling


def _heads(x: torch.Tensor, count: int, head_dim: int) -> torch.Tensor:
    """[T, count * head_dim] -> [count, T, head_dim]."""
    return x.view(x.shape[0], count, head_dim).transpose(0, 1)


def _attention(p: _Pass, layer: int, block, x: torch.Tensor) -> torch.Tensor:
    s, iv, attn = p.shape, p.iv, block.self_attn
    name = f"layers.{layer}.self_attn"
    length = x.shape[0]
    normed = _rms_norm(x, p.gain("attention", block.input_layernorm.weight), block.input_layernorm.variance_epsilon)
    p.keep(layer, "attn_norm_out", normed)
    q = _heads(p.linear(normed, f"{name}.q_proj", attn.q_proj.weight), s.heads, s.head_dim)
    k = _heads(p.linear(normed, f"{name}.k_proj", attn.k_proj.weight), s.kv_heads, s.head_dim)
    v = _heads(p.linear(normed, f"{name}.v_proj", attn.v_proj.weight), s.kv_heads, s.head_dim)
    if iv.kv_groups is not None and iv.kv_groups != s.kv_heads:
        # Mean-pooling the projected heads equals projecting with the mean-pooled K/V weights (Ainslie et al.
        # 2023), because a projection is linear; pooling the outputs just avoids building new weights.
        k = k.reshape(iv.kv_groups, -1, length, s.head_dim).mean(1)
        v = v.reshape(iv.kv_groups, -1, length, s.head_dim).mean(1)
    p.keep(layer, "q", q)
    p.keep(layer, "k", k)
    p.keep(layer, "v", v)
    if p.cos is not None:
        q, k = _rotate(q, p.cos, p.sin), _rotate(k, p.cos, p.sin)
    p.keep(layer, "q_rot", q)
    p.keep(layer, "k_rot", k)
    scale = s.head_dim ** -0.5
    if layer in p.record_at and p.names & {"scores", "probs"}:
        # The explicit path, only where the scores are wanted: the fused kernel below never forms them.
        # Grouped-query attention: query head h reads KV head h // (heads / kv_heads).
        share = s.heads // k.shape[0]
        k, v = k.repeat_interleave(share, dim=0), v.repeat_interleave(share, dim=0)
        scores = (q @ k.transpose(-1, -2)) * scale
        if iv.causal_mask:
            later = torch.ones(length, length, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(later, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        p.keep(layer, "scores", scores)
        p.keep(layer, "probs", probs)
        out = probs @ v
    else:
        # The same kernel call the model's SDPA attention makes (batch of one, grouped KV heads), so the
        # untraced pass matches the model bit for bit rather than to rounding.
        out = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=iv.causal_mask and length > 1,
                                             scale=scale, enable_gqa=True)[0]
    ablated = [h for (l, h) in iv.ablate_heads if l == layer]
    if ablated:
        out = out.clone()
        out[ablated] = 0.0
    p.keep(layer, "head_out", out)
    merged = out.transpose(0, 1).reshape(length, s.heads * s.head_dim)
    attn_out = p.linear(merged, f"{name}.o_proj", attn.o_proj.weight)
    p.keep(layer, "attn_out", attn_out)
    return attn_out


def _ffn(p: _Pass, layer: int, block, x: torch.Tensor) -> torch.Tensor:
    mlp, name = block.mlp, f"layers.{layer}.mlp"
    normed = _rms_norm(x, p.gain("ffn", block.post_attention_layernorm.weight),
                       block.post_attention_layernorm.variance_epsilon)
    p.keep(layer, "ffn_norm_out", normed)
    gate = p.linear(normed, f"{name}.gate_proj", mlp.gate_proj.weight)
    up = p.linear(normed, f"{name}.up_proj", mlp.up_proj.weight)
    act = ACTIVATIONS[p.iv.activation](gate)
    product = act * up
    ablated = [n for (l, n) in p.iv.ablate_neurons if l == layer]
    if ablated:
        product[:, ablated] = 0.0    # product is this pass's own tensor: writing into it touches nothing shared
    if p.iv.ffn_product_transform is not None:
        product = _transformed_product(p.iv.ffn_product_transform, layer, product)
    for key, value in (("gate", gate), ("up", up), ("act", act), ("product", product)):
        p.keep(layer, key, value)
    down = p.linear(product, f"{name}.down_proj", mlp.down_proj.weight)
    p.keep(layer, "down", down)
    return down


def _transformed_product(transform: ProductTransform, layer: int, product: torch.Tensor) -> torch.Tensor:
    changed = transform(layer, product)
    if not isinstance(changed, torch.Tensor) or changed.shape != product.shape:
        raise ValueError(f"ffn_product_transform must return a tensor of shape {tuple(product.shape)}")
    return changed.to(torch.float32)


def _run_layers(p: _Pass, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embed, run the blocks, apply the final norm and lm_head: (logits, final-normed states, lm_head weight).

    The one place the model's weights are computed with; callers hold the CPU gate around it.
    """
    model = p.lm.model.model
    x = model.embed_tokens.weight[torch.tensor(ids)]
    runs = p.shape.layers if p.iv.exit_layer is None else p.iv.exit_layer
    for layer in range(runs):
        block = model.layers[layer]
        p.keep(layer, "resid_in", x)
        x = x + _attention(p, layer, block, x)
        p.keep(layer, "resid_mid", x)
        x = x + _ffn(p, layer, block, x)
        p.keep(layer, "resid_out", x)
        if layer in p.lens_at:
            p.lens_inputs[layer] = x
    final = _rms_norm(x, p.gain("final", model.norm.weight), model.norm.variance_epsilon)
    head = p.weight("lm_head", p.lm.model.lm_head.weight)
    return F.linear(final, head), final, head


def _read_only(t: torch.Tensor) -> np.ndarray:
    a = t.numpy()
    a.flags.writeable = False
    return a


def _lens(p: _Pass, layers: tuple[int, ...], head: torch.Tensor, last_only: bool) -> LogitLens:
    """The lens rows of all layers go through lm_head in blocks of LENS_ROWS: a block reads the 113 MB
    matrix once for many rows (one row at a time is memory-bound, 30 reads of it), and at most one block of
    [LENS_ROWS, vocab] logits exists at once."""
    model = p.lm.model.model
    length = next(iter(p.lens_inputs.values())).shape[0]
    positions = (length - 1,) if last_only else tuple(range(length))
    rows = torch.cat([p.lens_inputs[l][positions[0]:] for l in layers])        # [layers * positions, d_model]
    rows = _rms_norm(rows, p.gain("final", model.norm.weight), model.norm.variance_epsilon)
    is_last = (torch.arange(rows.shape[0]) % len(positions)) == len(positions) - 1   # each layer's last position
    ids, probs, last = [], [], []
    for block, block_is_last in zip(rows.split(LENS_ROWS), is_last.split(LENS_ROWS)):
        logits = F.linear(block, head)
        top = torch.softmax(logits, dim=-1).topk(LENS_TOP_K, dim=-1)
        ids.append(top.indices)
        probs.append(top.values)
        last.append(logits[block_is_last])
    shape = (len(layers), len(positions), LENS_TOP_K)
    return LogitLens(positions=positions, top_ids=_read_only(torch.cat(ids).view(shape)),
                     top_probs=_read_only(torch.cat(probs).view(shape)), last_logits=_read_only(torch.cat(last)))


def trace(lm: LiveModel, ids: list[int], record: Iterable[str] = (), layers: Iterable[int] | None = None,
          interventions: Interventions = Interventions()) -> TracedPass:
    """Run SmolLM2 over `ids` with `interventions`, keeping the `record`ed intermediates of `layers`.

    `layers` None means every layer the pass runs. The logit lens is computed for the same layers.
    A pass that records little costs what the model's own forward costs (see the module docstring).
    """
    if not ids:
        raise ValueError("a traced pass needs at least one token")
    names = frozenset(record)
    if not names <= LAYER_NAMES | GLOBAL_NAMES:
        raise ValueError(f"cannot record {sorted(names - LAYER_NAMES - GLOBAL_NAMES)}; "
                         f"recordable: {sorted(LAYER_NAMES | GLOBAL_NAMES)}")
    s = _shape(lm)
    _check(interventions, s)
    runs = s.layers if interventions.exit_layer is None else interventions.exit_layer
    chosen = _layers_to_record(layers, runs, s.layers)
    with model_work():   # the CPU gate, and inference mode: no autograd state on the shared weights
        length = len(ids)
        cos = sin = None
        if interventions.rope:
            positions = torch.arange(length)[None] + interventions.position_shift
            if interventions.position_scale != 1:
                positions = positions * float(interventions.position_scale)   # fractional positions
            cos, sin = _rope_tables(lm, positions, interventions.rope_theta)
        p = _Pass(lm=lm, iv=interventions, shape=s, names=names & LAYER_NAMES,
                  record_at=frozenset(chosen) if names & LAYER_NAMES else frozenset(),
                  lens_at=frozenset(chosen) if names & {"logit_lens", "logit_lens_last"} else frozenset(),
                  cos=cos, sin=sin)
        logits, final, head = _run_layers(p, list(ids))
        lens = _lens(p, chosen, head, last_only="logit_lens" not in names) if p.lens_at else None
        del head   # a transformed lm_head weight is 113 MB: gone before the results are packed
        recorded = {name: _read_only(torch.stack([by_layer[l] for l in chosen])) for name, by_layer in p.taken.items()}
    return TracedPass(ids=tuple(ids), layers=chosen, interventions=interventions, logits=_read_only(logits),
                      recorded=MappingProxyType(recorded),
                      final_norm=_read_only(final) if "final_norm" in names else None, lens=lens)
