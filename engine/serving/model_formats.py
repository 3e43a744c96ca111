"""Reading the model's two files as bytes: the 4-bit GGUF file it ships in and the float32 safetensors cache.

Everything here is read from the files themselves (never typed in): the GGUF header, its typed metadata (the
architecture, the chat template, the tokenizer), the tensor directory, and the raw bytes of one Q4_1 block,
which is decoded by hand and compared with the `gguf` package's own de-quantizer. The safetensors cache's
header (an 8-byte little-endian length followed by JSON) is parsed by hand the same way.
"""
from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Q4_1_BLOCK = 32          # weights per Q4_1 block
Q4_1_BYTES = 20          # float16 scale d + float16 minimum m + 16 bytes holding 32 four-bit quants


@dataclass(frozen=True)
class GgufHeader:
    """The first 24 bytes: magic, version, tensor count, metadata key-value count (little-endian)."""
    raw: bytes
    magic: bytes
    version: int
    tensor_count: int
    kv_count: int


@dataclass(frozen=True)
class MetadataEntry:
    key: str
    type_name: str       # "string", "uint32", "array of string", ...
    shown: str           # the value, or a summary for long arrays


@dataclass(frozen=True)
class TensorEntry:
    name: str
    type_name: str           # ggml type: "Q4_1", "Q8_0", "F32"
    dims: tuple[int, ...]    # GGUF order: ne0 (the contiguous row length) first
    offset: int              # from the start of the tensor-data section, as stored in the file
    n_bytes: int
    n_elements: int

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.n_bytes / self.n_elements


@dataclass(frozen=True)
class Q4_1Block:
    """One block of 32 weights: its 20 bytes, the fields decoded by hand, and the library's values."""
    tensor: str
    row: int
    block: int
    file_offset: int          # absolute byte position of the block in the file
    raw: bytes
    d: float
    m: float
    quants: np.ndarray        # 32 integers 0..15, weight order
    by_hand: np.ndarray       # d * q + m, float32
    library: np.ndarray       # gguf.quants.dequantize of the whole row, sliced to the block


@dataclass(frozen=True)
class SafetensorsHeader:
    length: int               # the 8-byte little-endian prefix
    raw_json: str
    metadata: dict
    tensors: tuple[tuple[str, str, tuple[int, ...], int, int], ...]   # name, dtype, shape, start, end
    file_bytes: int


def read_gguf_header(path: Path) -> GgufHeader:
    """Parse the fixed header by hand with struct: '<4sIQQ' (magic, uint32 version, two uint64 counts)."""
    with open(path, "rb") as f:
        raw = f.read(24)
    magic, version, tensors, kvs = struct.unpack("<4sIQQ", raw)
    return GgufHeader(raw, magic, version, tensors, kvs)


@functools.lru_cache(maxsize=2)
def open_gguf(path: str):
    """A memory-mapped GGUFReader (parsing the 49,152-token vocabulary takes a few seconds, so it is kept).

    Treat it as read-only: the arrays it hands out are views of the file.
    """
    from gguf import GGUFReader

    return GGUFReader(path)


def _type_name(field) -> str:
    names = [t.name.lower() for t in field.types]
    return names[0] if len(names) == 1 else f"{names[0]} of {names[1]}"


def field_value(reader, key: str):
    """A metadata value as Python (str, int, float, bool or list)."""
    return reader.fields[key].contents()


def metadata(reader, array_preview: int = 5, text_preview: int = 80) -> tuple[MetadataEntry, ...]:
    """Every key-value pair of the file; long arrays and strings summarized for a table."""
    entries = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):       # the reader exposes the header as pseudo-fields; shown apart
            continue
        value = field.contents()
        if isinstance(value, list):
            head = ", ".join(repr(v) for v in value[:array_preview])
            shown = f"{len(value):,} items: {head}" + (", …" if len(value) > array_preview else "")
        elif isinstance(value, str) and len(value) > text_preview:
            shown = f"{len(value):,} characters: {value[:text_preview]!r}…"
        else:
            shown = repr(value) if isinstance(value, str) else str(value)
        entries.append(MetadataEntry(key, _type_name(field), shown))
    return tuple(entries)


def tensor_entries(reader) -> tuple[TensorEntry, ...]:
    """The tensor directory in file order. The reader reports absolute offsets; the file stores them relative
    to the start of the (aligned) data section, which is what is returned."""
    return tuple(TensorEntry(t.name, t.tensor_type.name, tuple(int(x) for x in t.shape),
                             int(t.data_offset) - int(reader.data_offset), int(t.n_bytes), int(t.n_elements))
                 for t in reader.tensors)


def bytes_by_type(entries) -> dict[str, tuple[int, int, int]]:
    """type -> (tensor count, weights, bytes)."""
    out: dict[str, list[int]] = {}
    for e in entries:
        acc = out.setdefault(e.type_name, [0, 0, 0])
        acc[0] += 1
        acc[1] += e.n_elements
        acc[2] += e.n_bytes
    return {k: tuple(v) for k, v in out.items()}


def _tensor(reader, name: str):
    for t in reader.tensors:
        if t.name == name:
            return t
    raise KeyError(name)


def decode_q4_1(raw: bytes) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Decode one 20-byte Q4_1 block by hand: (d, m, quants in weight order, weights).

    Layout (ggml's block_q4_1): bytes 0-1 float16 scale d, bytes 2-3 float16 minimum m, bytes 4-19 the quants.
    Byte j holds weight j in its low nibble and weight j + 16 in its high nibble; w = d * q + m.
    """
    if len(raw) != Q4_1_BYTES:
        raise ValueError(f"a Q4_1 block is {Q4_1_BYTES} bytes, got {len(raw)}")
    d = np.frombuffer(raw[0:2], dtype="<f2")[0].astype(np.float32)
    m = np.frombuffer(raw[2:4], dtype="<f2")[0].astype(np.float32)
    packed = np.frombuffer(raw[4:20], dtype=np.uint8)
    quants = np.concatenate([packed & 0x0F, packed >> 4]).astype(np.uint8)
    weights = d * quants.astype(np.float32) + m
    return float(d), float(m), quants, weights.astype(np.float32)


def q4_1_rows(reader, name: str) -> tuple[int, int]:
    """(rows, blocks per row) of a Q4_1 tensor."""
    t = _tensor(reader, name)
    if t.tensor_type.name != "Q4_1":
        raise ValueError(f"{name} is {t.tensor_type.name}, not Q4_1")
    rows, row_bytes = t.data.shape
    return int(rows), int(row_bytes) // Q4_1_BYTES


def q4_1_block(reader, name: str, row: int, block: int) -> Q4_1Block:
    """Block `block` of row `row`: decoded by hand and by the gguf package (which de-quantizes the whole row)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    t = _tensor(reader, name)
    rows, blocks = q4_1_rows(reader, name)
    if not (0 <= row < rows and 0 <= block < blocks):
        raise IndexError(f"{name} has {rows} rows of {blocks} blocks")
    row_bytes = np.asarray(t.data[row])
    raw = row_bytes[block * Q4_1_BYTES:(block + 1) * Q4_1_BYTES].tobytes()
    d, m, quants, by_hand = decode_q4_1(raw)
    library = dequantize(row_bytes[None, :], GGMLQuantizationType.Q4_1)[0]
    library = np.asarray(library[block * Q4_1_BLOCK:(block + 1) * Q4_1_BLOCK], dtype=np.float32)
    file_offset = int(t.data_offset) + row * row_bytes.size + block * Q4_1_BYTES
    return Q4_1Block(name, row, block, file_offset, raw, d, m, quants, by_hand, library)


def dequantized(reader, name: str) -> np.ndarray:
    """The whole tensor de-quantized by the gguf package, in PyTorch's (out, in) layout."""
    from gguf.quants import dequantize

    t = _tensor(reader, name)
    return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)


_LAYER_PARTS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj"}


def cache_name(gguf_name: str) -> str:
    """The Hugging Face (safetensors) name of a GGUF tensor, as transformers' GGUF loader maps them."""
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    _, layer, part, kind = gguf_name.split(".")
    return f"model.layers.{layer}.{_LAYER_PARTS[part]}.{kind}"


def unpermute_rope_rows(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo the row order llama.cpp's converter gives Q and K.

    Hugging Face's LLaMA rotates dimension i with i + head_dim/2; ggml's rotates neighbours (2i, 2i+1). The
    converter interleaves each head's two halves so both compute the same attention; this puts them back.
    """
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse a safetensors file's header by hand: 8-byte little-endian length, then that many bytes of JSON."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        raw_json = f.read(length).decode("utf-8")
    parsed = json.loads(raw_json)
    meta = parsed.pop("__metadata__", {})
    tensors = tuple((name, spec["dtype"], tuple(spec["shape"]), *spec["data_offsets"])
                    for name, spec in parsed.items())
    return SafetensorsHeader(length, raw_json, meta, tensors, Path(path).stat().st_size)
