"""The baby GPT: transformers' own LlamaForCausalLM at a size that trains visibly on two CPU cores.

Same block as SmolLM2 (read from the same class): RMSNorm before attention and before the FFN, rotary position
embeddings, grouped-query causal attention, a SwiGLU FFN, input and output embeddings tied. Only the sizes
differ: 2 blocks of 64 dimensions and a ~60-character vocabulary give about 0.1 M parameters against SmolLM2's
134.5 M.

Two things are done here rather than left to transformers, so that a run is fixed by its seed alone, whichever
other runs share the process:
- initial weights come from a per-run torch.Generator (N(0, 0.02), LLaMA's initializer_range; norm gains 1)
  instead of the global random state;
- dropout draws its masks from a per-run generator too (torch's dropout only reads the global state). It sits
  where GPT-2 put it: on the embeddings, on the attention weights, and on each block's two residual branches.
  LLaMA-style models are pretrained without dropout (their config's attention_dropout is 0), so it is off
  unless a run asks for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ATTENTION_NAME = "baby_gpt_attention"
INIT_STD = 0.02   # LLaMA's initializer_range
MAX_LAYERS, MAX_D_MODEL, MAX_CONTEXT = 8, 256, 256


@dataclass(frozen=True)
class BabyShape:
    """The size of a baby GPT. heads must divide d_model, kv_heads must divide heads."""
    layers: int = 2
    d_model: int = 64
    heads: int = 4
    kv_heads: int = 2
    context: int = 64          # characters the model sees at once (and trains on per window)
    ffn_dim: int | None = None  # None: 8/3 of d_model, SmolLM2's ratio (1,536 / 576)

    def __post_init__(self):
        if not (1 <= self.layers <= MAX_LAYERS and 8 <= self.d_model <= MAX_D_MODEL and 2 <= self.context <= MAX_CONTEXT):
            raise ValueError(f"layers 1-{MAX_LAYERS}, d_model 8-{MAX_D_MODEL}, context 2-{MAX_CONTEXT}")
        if self.heads < 1 or self.d_model % self.heads or self.kv_heads < 1 or self.heads % self.kv_heads:
            raise ValueError("heads must divide d_model and kv_heads must divide heads")
        if (self.d_model // self.heads) % 2:
            raise ValueError("rotary embeddings need an even head size")

    @property
    def ffn(self) -> int:
        return self.ffn_dim or int(round(self.d_model * 8 / 3))


class GeneratorDropout:
    """Inverted dropout whose masks come from its own generator: zero each value with probability p and scale
    the rest by 1 / (1 - p), only while the model trains."""

    def __init__(self, p: float, generator: torch.Generator):
        self.p, self.generator, self.active = float(p), generator, False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active or self.p <= 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator) >= self.p
        return x * keep / (1 - self.p)


def _attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Causal attention for the baby GPT: the fused kernel, or the explicit softmax when weights drop out.

    No mask arrives from transformers for an attention registered under a new name, so causality is applied
    here; the baby GPT never uses a KV cache, so queries and keys cover the same positions.
    """
    drop: GeneratorDropout | None = getattr(module, "baby_dropout", None)
    if not (drop and drop.active and drop.p > 0):
        out = F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling, enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = (query @ key.transpose(2, 3)) * scaling
    t = scores.shape[-1]
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    weights = drop(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1))
    return (weights @ value).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, _attention)


def llama_config(shape: BabyShape, vocab_size: int, dropout: float = 0.0):
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=shape.d_model, intermediate_size=shape.ffn,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.kv_heads, max_position_embeddings=shape.context,
                         rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=True,
                         attention_dropout=float(dropout), initializer_range=INIT_STD,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None, use_cache=False)
    config._attn_implementation = ATTENTION_NAME
    return config


def build_model(shape: BabyShape, vocab_size: int, init_seed: int, dropout: float = 0.0,
                dropout_generator: torch.Generator | None = None):
    """A fresh baby GPT whose weights depend only on `init_seed` (and its shape and vocabulary).

    Built on the meta device (no memory, no random numbers drawn), then filled from a private generator,
    so building one never reads or moves torch's global random state.
    """
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    _register_attention()
    config = llama_config(shape, vocab_size, dropout)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.to_empty(device="cpu")
    model.model.rotary_emb = LlamaRotaryEmbedding(config=config)   # its cos/sin table is a buffer: rebuild it
    model.tie_weights()
    g = torch.Generator().manual_seed(int(init_seed))
    with torch.no_grad():
        for name, p in model.named_parameters():   # tied weights appear once
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * INIT_STD)
            else:
                p.fill_(1.0)   # RMSNorm gains
    model.baby_dropout = GeneratorDropout(dropout, dropout_generator or torch.Generator().manual_seed(0))
    _attach_dropout(model)
    return model


def _attach_dropout(model) -> None:
    drop: GeneratorDropout = model.baby_dropout
    if drop.p <= 0:
        return
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: drop(out))
    for layer in model.model.layers:
        layer.self_attn.baby_dropout = drop
        layer.self_attn.register_forward_hook(lambda module, args, out: (drop(out[0]), *out[1:]))
        layer.mlp.register_forward_hook(lambda module, args, out: drop(out))


def set_training(model, training: bool) -> None:
    """Train mode switches dropout on (if the run has any); eval mode off."""
    model.train(training)
    model.baby_dropout.active = training


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())   # the tied embedding counted once


def loss_of(model, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross-entropy over windows [B, context + 1]: inputs are all but the last character,
    targets all but the first (the same text shifted by one)."""
    logits = model(windows[:, :-1], use_cache=False).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


@torch.no_grad()
def sample(model, prompt_ids: list[int], length: int, context: int, temperature: float,
           generator: torch.Generator) -> list[int]:
    """`length` characters drawn one by one after `prompt_ids` (T <= 0: always the most likely); fewer if the
    model's weights are no longer finite (a diverged run)."""
    ids = list(prompt_ids)
    for _ in range(int(length)):
        logits = model(torch.tensor([ids[-context:]]), use_cache=False).logits[0, -1].float()
        if not torch.isfinite(logits).all():   # a diverged model has no distribution to draw from
            break
        if temperature <= 0:
            ids.append(int(logits.argmax()))
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            ids.append(int(torch.multinomial(probs, 1, generator=generator)))
    return ids[len(prompt_ids):]


def uniform_loss(vocab_size: int) -> float:
    return math.log(vocab_size)
