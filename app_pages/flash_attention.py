import time
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.flash_attention import cost_curves, running_state, tile_map
from engine.inside.flash_attention import BLOCK_SIZES, max_abs_difference, naive_attention, tiled_attention
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.flash_attention import SWEEP_BUDGET_S, attention_map, cost_job, head_data
from ui.inputs import layer_and_head, ranged_slider
from ui.jobs import follow
from ui.text import escape_markdown, human_bytes, short_tokens, wrapping_metric

DEFAULT_TEXT = (
    "FlashAttention computes exactly the same attention as the textbook formula, but it never writes down the "
    "full table of scores. It walks through the keys one block at a time, keeps a running maximum and a "
    "running sum for every query, and rescales what it has so far whenever a larger score turns up.")
MAX_TOKENS = 96            # the map stays readable; tiles of 16 give up to six key blocks per row
DEFAULT_LAYER, DEFAULT_HEAD, DEFAULT_BLOCK = 12, 5, 16
LENGTHS = [512, 1024, 2048, 4096, 8192, 16384]
LENGTH_CAP = 4096          # naive attention at 16,384 tokens allocates 1.3 GB for one head: not on a shared server
SWEEP_BLOCK = 64           # a block size real kernels use; smaller tiles only add Python overhead per tile here
AGAIN_FLAG = "_flash_measure_again"


def tiles_section(text: str, layer: int, head: int, block: int) -> None:
    with st.spinner("Running SmolLM2 over your text and keeping this layer's queries, keys and values..."):
        data = head_data(text, layer - 1, head - 1)
    length = len(data.tokens)
    labels = [visible(t) for t in data.tokens]
    naive = naive_attention(data.q, data.k, data.v)
    checks = {b: max_abs_difference(tiled_attention(data.q, data.k, data.v, b, b).output, naive) for b in BLOCK_SIZES}
    tiled = tiled_attention(data.q, data.k, data.v, block, block)

    st.markdown(f"Layer {layer}, head {head} reads key/value head {data.kv_head + 1}. Its queries and keys (after "
                f"RoPE) and values come from the traced forward pass over your {length} tokens: {length} × "
                f"{data.q.shape[1]} numbers each.")
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    a = b = c = d = row
    worst = max(checks.values())
    wrapping_metric(a, "Tiled vs naive, max |difference|", f"{checks[block]:.1e}",
                     f"{'✓' if worst < 1e-5 else '✗'} every block size ≤ {worst:.0e}",
                     "The largest gap between the tiled output and ordinary attention over all "
                     f"{length} × {data.q.shape[1]} output numbers, in float32. Float rounding only.")
    model_gap = max_abs_difference(tiled.output, data.model_output)
    wrapping_metric(b, "Tiled vs the model's own head", f"{model_gap:.1e}",
                     "its fused kernel, same pass", "The same head's output inside SmolLM2's forward pass, which "
                     "uses torch's fused attention kernel.")
    wrapping_metric(c, "Tiles computed", f"{tiled.tiles_computed} of {tiled.tiles_computed + tiled.tiles_skipped}",
                     f"{tiled.tiles_skipped} skipped: masked", "Tiles entirely above the diagonal hold only later "
                     "keys, which the causal mask hides: they are never computed.")
    wrapping_metric(d, "Largest intermediate", human_bytes(tiled.largest_tile_bytes),
                     f"vs {human_bytes(length * length * 4)} for all scores",
                     f"One {block} × {block} tile of float32 scores, against the {length} × {length} matrix naive "
                     "attention forms (and its softmax, another of the same size).")
    st.caption("Every block size offered, checked on this head: " + " · ".join(
        f"{b}: {v:.1e} {'✓' if v < 1e-5 else '✗'}" for b, v in checks.items()) + " (max |tiled − naive|).")

    st.subheader("One query row, tile by tile", anchor=False)
    row_col, step_col = st.columns(2)
    query = ranged_slider("Query token (position)", 1, length, length, "query", container=row_col,
                          help="The row followed below. Its block of queries is outlined on the map.") \
        if length > 1 else 1
    i = query - 1
    watched = tiled_attention(data.q, data.k, data.v, block, block, watch=i // block)
    steps = watched.steps
    with step_col:
        step = ranged_slider("Key tiles processed", 1, len(steps), len(steps), "step",
                             help="Move back to see the state after fewer key tiles.") if len(steps) > 1 else 1
        if len(steps) == 1:
            st.caption(f"The query's block needs a single key tile at block size {block}: try a smaller block.")
    row = i - (i // block) * block
    s = steps[step - 1]
    distances = [float(np.abs(t.output[row] - naive[i]).max()) for t in steps]   # against ordinary attention
    st.markdown(f"Query {query} (“{escape_markdown(labels[i])}”), after key tile {step} of {len(steps)} (keys "
                f"{s.key_start + 1}-{s.key_stop}): this tile's largest score is "
                + (f"{s.tile_max[row]:.3f}" if np.isfinite(s.tile_max[row]) else "−∞ (all masked)")
                + f", so the running max becomes m = {s.running_max[row]:.3f}; what was summed before is multiplied "
                f"by e^(m_old − m_new) = {s.rescale[row]:.4f}, giving ℓ = {s.running_sum[row]:.4f}.")
    # The map, then the running state, each full width: side by side, both are cramped on a laptop screen.
    weights = attention_map(text, layer - 1, head - 1)
    show_chart(figure(tile_map, weights, labels, block, i, step,
                      title=f"Attention map of this head, cut into {block} × {block} tiles"),
               partial(pd.DataFrame, {"query_position": np.repeat(np.arange(1, length + 1), length),
                                      "key_position": np.tile(np.arange(1, length + 1), length),
                                      "weight": weights.ravel()}),
               name=f"flash-tiles-layer{layer}-head{head}", key="tiles")
    st.caption("Naive attention forms this whole map; the tiled loop only ever holds one outlined tile of "
               "it. Orange: the key tiles already folded into the query's block; thick: the current one. "
               "Grey: masked.")
    show_chart(figure(running_state, [float(t.tile_max[row]) for t in steps],
                      [float(t.running_max[row]) for t in steps], [float(t.running_sum[row]) for t in steps],
                      distances, step - 1, title=f"The running state of query {query}"),
               partial(pd.DataFrame, {"key_tile": range(1, len(steps) + 1),
                                      "key_start": [t.key_start + 1 for t in steps],
                                      "key_stop": [t.key_stop for t in steps],
                                      "tile_max": [float(t.tile_max[row]) for t in steps],
                                      "running_max": [float(t.running_max[row]) for t in steps],
                                      "rescale": [float(t.rescale[row]) for t in steps],
                                      "running_sum": [float(t.running_sum[row]) for t in steps],
                                      "max_distance_to_naive": distances}),
               name=f"flash-running-state-query{query}", key="state")
    st.caption(f"After the last tile the output equals ordinary attention for this row to {distances[-1]:.1e} "
               "(float rounding). Before it, the output is attention over the keys seen so far only.")


def sweep_section() -> None:
    st.subheader("Time and memory as the sequence grows, measured", anchor=False)
    c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
    longest = c1.select_slider("Longest sequence to measure (tokens)", LENGTHS, value=4096, key="longest",
                               bind="query-params", format_func=short_tokens,
                               help=f"One causal head of size 64 at 256, 512, ... tokens, tiled in blocks of "
                                    f"{SWEEP_BLOCK}. Measured up to {LENGTH_CAP:,} tokens on this shared server.")
    c2.button("Measure again", key="again", icon=":material/refresh:", width="stretch",
              on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
    longest = longest if longest in LENGTHS else 4096
    if longest > LENGTH_CAP:
        st.info(f"Measured up to {LENGTH_CAP:,} tokens only: this server is shared, and naive attention at "
                f"{longest:,} tokens would allocate about {human_bytes(5 * longest * longest)} for one head (its "
                "float32 scores, turned into probabilities in place, and a one-byte mask per pair).",
                icon=":material/straighten:")
    again = bool(st.session_state.pop(AGAIN_FLAG, False))
    sweep = follow(cost_job(longest, LENGTH_CAP, SWEEP_BLOCK, again=again), what="attention sweep")
    if sweep is None:
        return
    points = sweep.points
    last = points[-1]
    row = st.container(horizontal=True, gap="large")   # wraps on a narrow window
    a = b = c = d = row
    wrapping_metric(a, f"Naive peak at {last.length:,}", human_bytes(last.naive_peak_bytes),
                     f"{last.naive_peak_bytes / last.score_matrix_bytes:.1f}× one T×T matrix",
                     "Peak bytes allocated while naive attention ran, read by Python's tracemalloc (which sees "
                     "numpy's arrays) in a child process that runs nothing else.")
    wrapping_metric(b, f"Tiled peak at {last.length:,}", human_bytes(last.tiled_peak_bytes),
                     f"{last.naive_peak_bytes / max(last.tiled_peak_bytes, 1):,.0f}× less",
                     "The output [T, 64], the running max and sum, and one tile at a time.")
    wrapping_metric(c, f"Time at {last.length:,}: naive / tiled", f"{1000 * last.naive_seconds:.3g} / "
                     f"{1000 * last.tiled_seconds:.3g} ms", f"tiled {last.tiled_seconds / last.naive_seconds:.2f}× "
                     "the naive time", "Best of 3 runs on one core. Both in numpy; the tiled loop also skips "
                     "the masked tiles.")
    wrapping_metric(d, "Fused kernel (torch)", f"{1000 * last.fused_seconds:.3g} ms",
                     f"backend: {sweep.fused_backend}", "torch.nn.functional.scaled_dot_product_attention on "
                     "the same data; the backend is the one torch's dispatcher reports choosing.")
    show_chart(figure(cost_curves, [p.length for p in points], [1000 * p.naive_seconds for p in points],
                      [1000 * p.tiled_seconds for p in points], [1000 * p.fused_seconds for p in points],
                      [p.naive_peak_bytes / 1e6 for p in points], [p.tiled_peak_bytes / 1e6 for p in points],
                      [p.score_matrix_bytes / 1e6 for p in points], sweep.block,
                      title=f"One causal attention head (size {sweep.head_dim}) on this server's CPU"),
               partial(pd.DataFrame, {"tokens": [p.length for p in points],
                                      "naive_ms": [1000 * p.naive_seconds for p in points],
                                      "tiled_ms": [1000 * p.tiled_seconds for p in points],
                                      "fused_ms": [1000 * p.fused_seconds for p in points],
                                      "naive_peak_bytes": [p.naive_peak_bytes for p in points],
                                      "tiled_peak_bytes": [p.tiled_peak_bytes for p in points],
                                      "score_matrix_bytes": [p.score_matrix_bytes for p in points],
                                      "max_abs_difference": [p.max_difference for p in points]}),
               name=f"flash-attention-costs-block{sweep.block}", key="costs")
    measured = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(sweep.measured_at))
    stopped = (f" Stopped after {len(points)} of {len(sweep.requested)} lengths: the run ends when its reader "
               f"presses Stop or after {SWEEP_BUDGET_S} s." if sweep.stopped_early else "")
    st.caption(f"Measured at {measured} with random q, k, v (cost depends on the shapes, not the values), tiles "
               f"of {sweep.block} × {sweep.block}, tiled equal to naive to ≤ "
               f"{max(p.max_difference for p in points):.0e} at every length.{stopped} Memory is what numpy "
               "allocated, traced in a separate process so that other readers' work is not counted; torch's kernel "
               "allocates outside Python's tracker, so it has a time but no memory point. Read the memory panel "
               "as the lesson: naive grows with T², tiled with T. Read the time panel with care: a CPU's caches "
               "play the part of a GPU's on-chip memory, so small tiles can help here too, and "
               "the tiled loop skips the masked tiles; but it pays Python overhead on every tile and cannot fuse a "
               "tile's steps into one kernel. FlashAttention's GPU speed-up comes from fewer trips to slow memory; "
               "the compiled torch kernel (green) is the fair comparison on this CPU.")


with concept_page("flash-attention"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=100,
                        help=f"Up to {MAX_TOKENS} tokens, so the tiled map stays readable; longer text is cut "
                             "with a note.")
    pick_layer, pick_head, pick_block = st.columns(3)
    layer, head = layer_and_head(pick_layer, pick_head, DEFAULT_LAYER, DEFAULT_HEAD)
    block = pick_block.select_slider(
        "Block size (tokens per tile)", BLOCK_SIZES, value=DEFAULT_BLOCK, key="block", bind="query-params",
        help="Queries and keys are cut into blocks of this many tokens; one tile is a block of queries against a "
             "block of keys. Real kernels pick 64 to 256 to fill the GPU's on-chip memory.")
    block = block if block in BLOCK_SIZES else DEFAULT_BLOCK
    if text.strip():
        tiles_section(text, layer, head, block)
    else:
        st.info("Type a few sentences above to run FlashAttention's tiles over a real head of SmolLM2. The "
                "measurement below needs no text.", icon=":material/edit:")
    st.divider()
    sweep_section()
