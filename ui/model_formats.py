"""Cached reads of the model's two files for the model-formats page (the files never change while serving)."""
from __future__ import annotations

import numpy as np
import streamlit as st
from safetensors import safe_open

from engine.model.model_cache import cache_root, model_cache_dir
from engine.serving.model_formats import (SafetensorsHeader, cache_name, dequantized, open_gguf, q4_1_block,
                                  read_safetensors_header, unpermute_rope_rows)
from engine.model.model_source import locate_gguf


def gguf_path():
    return locate_gguf(cache_root())


def safetensors_path():
    return model_cache_dir() / "model.safetensors"


@st.cache_resource(max_entries=1, show_spinner="Reading the GGUF file's metadata (once)…")
def reader():
    return open_gguf(str(gguf_path()))


@st.cache_data(max_entries=64, show_spinner=False)
def block(name: str, row: int, index: int):
    return q4_1_block(reader(), name, row, index)


@st.cache_data(max_entries=2, show_spinner=False)
def safetensors_header() -> SafetensorsHeader:
    return read_safetensors_header(safetensors_path())


@st.cache_data(max_entries=16, show_spinner=False)
def cache_row(name: str, row: int, heads: int) -> tuple[np.ndarray, float, float]:
    """(the cache's float32 row, max |GGUF − cache| as stored, max |GGUF − cache| after undoing the RoPE row
    order) for one row of a tensor: the whole tensor is compared, the row is kept for the table."""
    with safe_open(safetensors_path(), "np") as f:
        cached = f.get_tensor(cache_name(name))
    gguf_values = dequantized(reader(), name)
    as_stored = float(np.abs(gguf_values - cached).max())
    reordered = unpermute_rope_rows(gguf_values, heads) if heads else gguf_values
    return cached[row].copy(), as_stored, float(np.abs(reordered - cached).max())
