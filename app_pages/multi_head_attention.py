from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.attention import attention_heatmap, head_grid, head_map, head_scatter, overview
from engine.inside.attention import findings
from ui import concept_page, prompt_input
from ui.attention import (MAX_TOKENS, THUMBNAIL, captured, head_name, statistics, thumbnails,
                          token_labels)
from ui.charts import figure, show_chart
from ui.text import escape_markdown
from ui.inputs import layer_and_head, stop_if_empty

DEFAULT_TEXT = ("The cat sat on the mat because the mat was warm. Then the dog sat on the mat too, "
                "and the cat was not happy about it.")
DEFAULT_LAYER, DEFAULT_HEAD = 2, 3   # shown 1-based; on the default text a clear previous-token head


def pick_from_overview() -> None:
    """A click on a thumbnail selects that layer and head (the sliders, and so the URL, follow)."""
    state = st.session_state.get("overview")
    points = state.selection.points if state is not None else []
    if points and "customdata" in points[0]:
        layer, head = points[0]["customdata"][:2]
        st.session_state["layer"], st.session_state["head"] = int(layer) + 1, int(head) + 1


def names(cells: list[tuple[int, int, float]], limit: int = 12) -> str:
    shown = ", ".join(f"{head_name(l, h)} ({share:.0%})" for l, h, share in cells[:limit])
    return shown + (f" and {len(cells) - limit} more" if len(cells) > limit else "")


def head_reading(stats, layer: int, head: int) -> str:
    """A one-line reading of one head's numbers, by the same rules the findings below use."""
    first, prev = stats.first_token_share[layer, head], stats.previous_token_share[layer, head]
    if prev > 0.5:
        return "Reads mostly from the token just before: a previous-token head."
    if first > 0.5:
        return ("Parks most of its weight on the first token: an attention-sink pattern. Where it has something "
                "to read, weight moves off the first column.")
    if stats.entropy_bits[layer, head] > 2.5:
        return "Spreads its weight over many earlier tokens."
    return "No single tidy role by these numbers; hover the map to see where each token looks."


with concept_page("multi-head-attention"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} tokens; longer text is cut with a note.")
    pick_layer, pick_head = st.columns(2)
    layer, head = layer_and_head(pick_layer, pick_head, DEFAULT_LAYER, DEFAULT_HEAD,
                                 head_help="Or click a thumbnail in the overview below.")
    stop_if_empty(text, "Type a few sentences above (a text that repeats words, such as *The cat sat on the mat. The dog "
                        "sat on the mat too.*, shows the most head types).")

    with st.spinner("Running SmolLM2 over your text and keeping all 270 attention maps..."):
        cap = captured(text)
    labels = token_labels(cap)
    length = cap.length
    L, H = layer - 1, head - 1
    if length < 2:
        st.info("Head statistics need at least two tokens: the first token can only attend to itself, so every "
                "head gives it weight 1. Add a few words.", icon=":material/edit:")
        st.stop()
    stats = statistics(text)

    st.subheader("The whole model: 30 layers × 9 heads", anchor=False)
    hover = [[f"layer {l + 1} head {h + 1}<br>on the first token {stats.first_token_share[l, h]:.0%}"
              f"<br>on the previous token {stats.previous_token_share[l, h]:.0%}"
              f"<br>entropy {stats.entropy_bits[l, h]:.2f} bits · distance {stats.mean_distance[l, h]:.1f} tokens"
              for h in range(cap.heads)] for l in range(cap.layers)]
    st.plotly_chart(figure(overview, thumbnails(text), hover, selected=(L, H)), key="overview", on_select=pick_from_overview,
                    selection_mode="points", width="stretch", config={"displaylogo": False, "scrollZoom": False})
    shrink = (f" Your {length} tokens are pooled to {THUMBNAIL} × {THUMBNAIL} blocks (weights summed over keys and "
              "averaged over queries, so each row still sums to 1)." if length > THUMBNAIL else "")
    st.caption(f"Each square is one head's attention map, queries top to bottom, keys left to right.{shrink} "
               "Click a square to select that head. A bright left edge is a head parking weight on the first "
               "token; a bright line just under the diagonal is a previous-token head.")

    st.subheader(f"Layer {layer}, head {head}", anchor=False)
    big_col, about_col = st.columns([3, 2], gap="medium")
    q, k = np.tril_indices(length)
    with big_col:
        show_chart(figure(attention_heatmap, cap.attentions[L, H], labels,
                                     title="Rows: queries · columns: keys · grey: masked (later tokens)"),
                   partial(pd.DataFrame, {"layer": layer, "head": head, "query_position": q + 1, "key_position": k + 1,
                                 "weight": cap.attentions[L, H][q, k]}),
                   f"attention-layer{layer}-head{head}", key="big")
    with about_col:
        m1, m2 = st.columns(2)
        m1.metric("On the first token", f"{stats.first_token_share[L, H]:.0%}",
                  help="Mean weight on position 1 over query positions 2..T: the attention sink.")
        m2.metric("On the previous token", f"{stats.previous_token_share[L, H]:.0%}",
                  help="Mean weight on position i-1 over query positions 2..T.")
        m3, m4 = st.columns(2)
        m3.metric("Entropy", f"{stats.entropy_bits[L, H]:.2f} bits",
                  help="Mean entropy of a query's weights. 0 bits: all weight on one token; "
                       f"log2(T) = {np.log2(length):.2f} bits at most.")
        m4.metric("Mean distance", f"{stats.mean_distance[L, H]:.1f} tokens",
                  help="Mean of Σ_j a_ij (i - j): how far back the head reads, on average.")
        st.caption(head_reading(stats, L, H))

    st.subheader(f"Layer {layer}: all {cap.heads} heads", anchor=False)
    show_chart(figure(head_grid, cap.attentions[L], labels, selected=H),
               partial(pd.DataFrame, {"layer": layer, "head": np.repeat(np.arange(1, cap.heads + 1), len(q)),
                             "query_position": np.tile(q + 1, cap.heads), "key_position": np.tile(k + 1, cap.heads),
                             "weight": cap.attentions[L][:, q, k].reshape(-1)}),
               name=f"attention-layer{layer}-all-heads", key="grid")
    st.caption("Same layer, same input, nine different patterns: each head has its own queries, keys and values. "
               "Heads 1-3, 4-6 and 7-9 each share one key/value head (grouped-query attention), yet their patterns "
               "differ because their queries differ. One colour scale, 0 to 1, for all nine.")

    st.subheader("Reading 270 heads with four numbers", anchor=False)
    found = findings(stats)
    sink_token = escape_markdown(labels[0])
    notes = []
    if found.previous_token_heads:
        notes.append(f"**Previous-token heads.** {len(found.previous_token_heads)} heads put more than half their "
                     f"weight on the token just before: {names(found.previous_token_heads)}.")
    else:
        top_prev = np.unravel_index(np.argmax(stats.previous_token_share), stats.previous_token_share.shape)
        notes.append(f"**Previous-token heads.** No head puts more than half its weight on the previous token "
                     f"for this text; the closest is {head_name(*top_prev)} "
                     f"({stats.previous_token_share[top_prev]:.0%}).")
    sl, sh, share = found.strongest_sink
    notes.append(f"**Attention sink.** In {len(found.sink_layers)} of {cap.layers} layers the heads put, on average, "
                 f"more than half their weight on the first token “{sink_token}”; the strongest is "
                 f"{head_name(sl, sh)} with {share:.0%}. Spreading evenly would give it only "
                 f"{found.uniform_share:.0%}.")
    fl, fh, fe = found.most_focused
    wl, wh, we = found.most_spread
    where = (f", {stats.first_token_share[fl, fh]:.0%} of it on the first token"
             if stats.first_token_share[fl, fh] > 0.5 else "")
    notes.append(f"**Focus.** The most focused head is {head_name(fl, fh)} ({fe:.2f} bits: about {2 ** fe:.1f} "
                 f"tokens' worth of attention{where}); the most spread out is {head_name(wl, wh)} ({we:.2f} bits, "
                 f"about {2 ** we:.1f} tokens).")
    st.markdown("\n\n".join(notes))
    st.caption(f"Averages over query positions 2 to {length} (position 1 can only see itself). Heads are named "
               "L(layer)H(head), both counted from 1. Change the text to see which findings hold up.")

    left, right = st.columns(2, gap="medium")
    selected = (L, H)
    table = pd.DataFrame(stats.as_rows())
    table["layer"] += 1
    table["head"] += 1
    with left:
        show_chart(figure(head_map, stats.first_token_share, "Share of attention on the first token (sink)",
                            "share", ".0%", zmax=1, selected=selected), table, "first-token-share", key="sink_map")
        show_chart(figure(head_scatter, stats.entropy_bits, stats.mean_distance, stats.previous_token_share,
                                "previous-token share", selected=selected,
                                title="Entropy against distance, one point per head"),
                   table, "head-statistics", key="scatter")
    with right:
        show_chart(figure(head_map, stats.previous_token_share, "Share of attention on the previous token",
                            "share", ".0%", zmax=1, selected=selected), table, "previous-token-share",
                   key="prev_map")
        show_chart(figure(head_map, stats.entropy_bits, "Mean entropy of a row", "bits", ".2f", selected=selected),
                   table, "entropy", key="entropy_map")
    st.caption("Bottom left: previous-token heads sit at distance ≈ 1 with low entropy; sink heads read far back "
               "(distance grows with position) with low entropy; heads in the upper right spread their weight.")
    with st.expander("All 270 heads as a table (sortable)"):
        st.dataframe(table.rename(columns={
            "entropy_bits": "entropy (bits)", "mean_distance": "mean distance (tokens)",
            "first_token_share": "on first token", "previous_token_share": "on previous token",
            "self_share": "on itself"}), hide_index=True, width="stretch")
