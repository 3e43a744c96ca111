"""The model's files read as bytes: GGUF header and directory, a hand-decoded Q4_1 block, the safetensors header."""
import json
import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from safetensors import safe_open

from engine.model.model_cache import cache_root, model_cache_dir
from engine.serving.model_formats import (cache_name, decode_q4_1, open_gguf, q4_1_block, read_gguf_header,
                                  read_safetensors_header, tensor_entries, unpermute_rope_rows, dequantized,
                                  bytes_by_type, metadata)
from engine.model.model_source import locate_gguf


@pytest.fixture(scope="module")
def gguf_path():
    path = locate_gguf(cache_root())
    if path is None:
        pytest.skip("the model package is not installed")
    return path


def test_decode_q4_1_layout_matches_the_library_on_synthetic_blocks():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 32)).astype(np.float32)
    packed = quantize(weights, GGMLQuantizationType.Q4_1)      # (5, 20) bytes, the library's own layout
    expected = dequantize(packed, GGMLQuantizationType.Q4_1)
    for original, row, want in zip(weights, packed, expected):
        d, m, quants, got = decode_q4_1(row.tobytes())
        assert got.tolist() == want.tolist()                   # bit-exact
        assert quants.min() >= 0 and quants.max() <= 15
        np.testing.assert_allclose(got, original, atol=d / 2 + 1e-3)   # rounding error at most half a step


def test_decode_q4_1_puts_low_nibbles_first():
    raw = struct.pack("<ee", 2.0, -1.0) + bytes([0x21] + [0] * 15)  # byte 0: low nibble 1, high nibble 2
    d, m, quants, w = decode_q4_1(raw)
    assert (d, m) == (2.0, -1.0)
    assert quants[0] == 1 and quants[16] == 2 and quants[1:16].sum() == 0
    assert w[0] == 1.0 and w[16] == 3.0 and w[1] == -1.0
    with pytest.raises(ValueError):
        decode_q4_1(raw[:19])


def test_header_by_hand_agrees_with_the_reader(gguf_path):
    header = read_gguf_header(gguf_path)
    reader = open_gguf(str(gguf_path))
    assert header.magic == b"GGUF"
    assert header.version == reader.fields["GGUF.version"].contents()
    assert header.tensor_count == len(reader.tensors)
    assert header.kv_count == len(metadata(reader))
    entries = tensor_entries(reader)
    assert entries[0].offset == 0
    assert all(e.offset % 32 == 0 for e in entries)           # default alignment
    assert sum(e.n_bytes for e in entries) <= gguf_path.stat().st_size - reader.data_offset
    types = bytes_by_type(entries)
    assert types["Q4_1"][2] * 8 / types["Q4_1"][1] == 5.0     # 20 bytes per 32 weights


def test_real_block_by_hand_equals_library(gguf_path):
    reader = open_gguf(str(gguf_path))
    block = q4_1_block(reader, "blk.0.ffn_down.weight", 3, 7)
    assert block.by_hand.tolist() == block.library.tolist()
    with open(gguf_path, "rb") as f:
        f.seek(block.file_offset)
        assert f.read(20) == block.raw
    with pytest.raises(IndexError):
        q4_1_block(reader, "blk.0.ffn_down.weight", 10**6, 0)


def test_cache_holds_the_gguf_values_exactly(gguf_path):
    folder = model_cache_dir()
    if not (folder / "model.safetensors").is_file():
        pytest.skip("no safetensors cache")
    reader = open_gguf(str(gguf_path))
    with safe_open(folder / "model.safetensors", "np") as f:
        down = f.get_tensor(cache_name("blk.2.ffn_down.weight"))
        assert np.array_equal(dequantized(reader, "blk.2.ffn_down.weight"), down)
        q = f.get_tensor(cache_name("blk.2.attn_q.weight"))
        raw_q = dequantized(reader, "blk.2.attn_q.weight")
        assert not np.array_equal(raw_q, q)                        # stored permuted for ggml's RoPE
        assert np.array_equal(unpermute_rope_rows(raw_q, 9), q)


def test_safetensors_header_by_hand(gguf_path):
    path = model_cache_dir() / "model.safetensors"
    if not path.is_file():
        pytest.skip("no safetensors cache")
    header = read_safetensors_header(path)
    with open(path, "rb") as f:
        assert struct.unpack("<Q", f.read(8))[0] == header.length
        assert json.loads(f.read(header.length))["__metadata__"] == header.metadata
    ends = sorted(t[4] for t in header.tensors)
    assert 8 + header.length + ends[-1] == header.file_bytes
    with safe_open(path, "np") as f:
        assert set(f.keys()) == {t[0] for t in header.tensors}
