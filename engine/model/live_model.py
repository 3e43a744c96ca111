"""The one shared SmolLM2: two views over a single set of weights, a guarded tokenizer, a model card.

Attention maps need the eager attention kernel (SDPA returns no weights), but eager is slower, so
the model is loaded once with SDPA and a second module with eager attention is built on the very
same tensors (no copy). Neither is ever changed after loading.
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.runtime.gate import configure_torch
from engine.model.model_cache import Report, build_cache, cache_is_complete, model_cache_dir

MODEL_NAME = "SmolLM2-135M-Instruct"
QUANT_NOTE = ("The weights come from a 4-bit (Q4_1) GGUF file and are de-quantized to float32: "
              "the numbers here are those of the quantized model, close to but not identical with "
              "the original bfloat16 release.")


@dataclass(frozen=True)
class ModelCard:
    name: str
    parameters: int
    layers: int
    d_model: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    rope_theta: float
    tied_embeddings: bool
    load_seconds: float
    loaded_from: str
    quant_note: str = QUANT_NOTE


@dataclass(frozen=True, eq=False)
class LiveModel:
    model: object          # LlamaForCausalLM, SDPA attention
    eager: object          # the same weights, eager attention (for attention maps)
    tokenizer: object      # fast tokenizer; use `tokenizing()` around every call
    card: ModelCard
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @contextmanager
    def tokenizing(self):
        """A fast tokenizer shared by threads can raise 'Already borrowed': one caller at a time."""
        with self._lock:
            yield self.tokenizer


def _card(model, seconds: float, source: str) -> ModelCard:
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    return ModelCard(
        name=MODEL_NAME,
        parameters=sum(p.numel() for p in model.parameters()),  # tied weights counted once
        layers=cfg.num_hidden_layers, d_model=cfg.hidden_size, heads=cfg.num_attention_heads,
        kv_heads=cfg.num_key_value_heads, head_dim=cfg.hidden_size // cfg.num_attention_heads,
        ffn_dim=cfg.intermediate_size, vocab_size=cfg.vocab_size,
        context_length=cfg.max_position_embeddings,
        rope_theta=float(rope.get("rope_theta", getattr(cfg, "rope_theta", 0.0))),
        tied_embeddings=bool(cfg.tie_word_embeddings), load_seconds=round(seconds, 2),
        loaded_from=source)


def load_live_model(report: Report = lambda msg, frac: None, cache: Path | None = None) -> LiveModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for a hub
    hf_logging.disable_progress_bar()  # progress is reported our way; tqdm bars only clutter the log
    configure_torch()  # torch threads and the CPU gate's slots, chosen together (engine/runtime/gate.py)
    started = time.perf_counter()
    folder = cache or model_cache_dir()
    source = "safetensors cache"
    if not cache_is_complete(folder):
        source = "GGUF file (first start: cache built now)"
        folder = build_cache(folder.parent, report)
    report("Loading the float32 weights", 0.95)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    eager_config = model.config.__class__.from_dict(model.config.to_dict())
    eager_config._attn_implementation = "eager"
    with torch.device("meta"):
        eager = LlamaForCausalLM(eager_config)
    eager.load_state_dict(model.state_dict(), assign=True)  # shares storage: no second copy
    eager.model.rotary_emb = model.model.rotary_emb  # its inv_freq buffer is not in the state dict
    eager.tie_weights()
    assert not any(t.is_meta for t in [*eager.parameters(), *eager.buffers()])
    eager.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for module in (model, eager):
        module.requires_grad_(False)
    return LiveModel(model=model, eager=eager, tokenizer=tokenizer,
                     card=_card(model, time.perf_counter() - started, source))
