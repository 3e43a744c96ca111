"""The model-formats page shows the real GGUF file's bytes: header, metadata, and a Q4_1 block decoded by hand that
equals the gguf library's values and the weights the live model runs on."""
import struct

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize

from engine.model.model_cache import cache_root
from engine.serving.model_formats import open_gguf
from engine.model.model_source import locate_gguf
from tests.pages import assert_no_exception, open_page, shown_text


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def table(at, column_start):
    frame = next(d.value for d in at.dataframe if any(str(c).startswith(column_start) for c in d.value.columns))
    return frame


def test_defaults_show_the_files_own_header_and_metadata(lm):
    path = locate_gguf(cache_root())
    at = open_page("model-formats")
    assert_no_exception(at)
    with open(path, "rb") as f:
        first = f.read(24)
    magic, version, tensors, kvs = struct.unpack("<4sIQQ", first)
    assert at.code[0].value == " ".join(f"{b:02x}" for b in first)
    header = table(at, "field")
    assert list(header["value"]) == [magic.decode(), str(version), str(tensors), str(kvs)]
    assert metric(at, "GGUF file").startswith(f"{path.stat().st_size / 1e6:,.2f}")
    # Metadata shown agrees with the live model's own config and tokenizer (loaded through transformers).
    cfg = lm.model.config
    assert metric(at, "Context length") == f"{cfg.max_position_embeddings:,}"
    assert metric(at, "Vocabulary") == f"{cfg.vocab_size:,}"
    assert metric(at, "Architecture") == cfg.model_type
    assert metric(at, "Special tokens") == f"{lm.tokenizer.bos_token_id} / {lm.tokenizer.eos_token_id}"
    assert lm.tokenizer.chat_template.strip() in [c.value.strip() for c in at.code]
    assert len(table(at, "dims")) == tensors


def test_share_link_block_decoded_by_hand_equals_library_and_live_weights(lm):
    name, row, block = "blk.5.ffn_up.weight", 100, 3
    at = open_page("model-formats", {"tensor": name, "row": str(row), "block": str(block)})
    assert_no_exception(at)
    # The 20 bytes straight from the file, found through the tensor directory.
    path = locate_gguf(cache_root())
    reader = open_gguf(str(path))
    tensor = next(t for t in reader.tensors if t.name == name)
    row_bytes = 20 * int(tensor.shape[0]) // 32
    start = int(tensor.data_offset) + row * row_bytes + block * 20
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(20)
    assert f"Bytes {start:,} to {start + 19:,}" in shown_text(at)
    code = next(c.value for c in at.code if c.value.startswith("d (float16)"))
    assert raw[0:2].hex(" ") in code and raw[4:20].hex(" ") in code
    library = dequantize(np.frombuffer(raw, np.uint8)[None, :], GGMLQuantizationType.Q4_1)[0]
    shown = table(at, "d·q + m")
    np.testing.assert_array_equal(shown["d·q + m (by hand)"].to_numpy(np.float32), library)
    np.testing.assert_array_equal(shown["gguf dequantize"].to_numpy(np.float32), library)
    live = lm.model.model.layers[5].mlp.up_proj.weight[row, block * 32:(block + 1) * 32].detach().numpy()
    np.testing.assert_array_equal(shown["cache (float32)"].to_numpy(np.float32), live)
    assert metric(at, "Max |by hand − gguf|") == "0"
    assert metric(at, "Scale d") == f"{float(np.frombuffer(raw[:2], '<f2')[0]):.6g}"
    assert any("bit for bit" in s.value for s in at.success)


def test_query_rows_follow_the_rope_reordering(lm):
    at = open_page("model-formats", {"tensor": "blk.0.attn_q.weight", "row": "1", "block": "0", "type": "nonsense"})
    assert_no_exception(at)
    shown = table(at, "d·q + m")
    live = lm.model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
    # GGUF row 1 of head 0 is PyTorch row head_dim / 2 = 32: the converter interleaved the two halves.
    np.testing.assert_array_equal(shown["cache (float32)"].to_numpy(np.float32), live[32, :32])
    np.testing.assert_array_equal(shown["gguf dequantize"].to_numpy(np.float32), live[32, :32])
    assert metric(at, "Max |GGUF − cache|") == "0"
    assert "row 32 in PyTorch's order" in shown_text(at)
