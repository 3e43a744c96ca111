from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.positions import perplexity_bars
from charts.rope import angle_heatmap, pair_contribution_bars, pair_rotation, score_by_distance_chart, wavelength_chart
from engine.inside.rope import as_pairs, pair_contributions, rotate_pairs, score_by_distance
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import layer_and_head, ranged_slider, stop_if_empty, whole_number_input
from ui.layout import described_metrics
from ui.positions import MAX_SHIFT, MAX_TOKENS, frequencies, rope_pass, rotations, shift, text_perplexity, \
    token_labels
from ui.text import escape_markdown

DEFAULT_TEXT = ("The old lighthouse keeper climbed the narrow stairs every evening to light the lamp, and ships far "
                "out at sea relied on its beam to find their way past the rocks.")
DEFAULT_LAYER, DEFAULT_HEAD = 2, 3     # 1-based; on the default text this head mostly reads the previous token
SPANS = {"64 tokens": 64, "1,024 tokens": 1024, "8,192 tokens": 8192}
OTHER_BASES = {"10,000 (LLaMA 2's base)": 10_000.0, "500,000 (LLaMA 3's base)": 500_000.0}


def shift_verdict(check) -> None:
    text = (f"Shifted by {check.shift:,}: the largest change in any attention score of any layer is "
            f"{check.max_score_difference:.1e} (scores reach ±{check.largest_score:.1f}).")
    if check.max_score_difference <= 1e-4:
        st.success(f"{text} Equal to within 1e-4 ✓: the model cannot tell where the text starts.",
                   icon=":material/check_circle:")
    else:
        st.info(f"{text} Exact in exact arithmetic; in float32 the angle m·θ is rounded, and the rounding grows "
                "with the position, so a shift of thousands leaves differences above 1e-4.", icon=":material/info:")


with concept_page("rope"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} tokens; longer text is cut with a note.")
    pick_layer, pick_head = st.columns(2)
    layer, head = layer_and_head(pick_layer, pick_head, DEFAULT_LAYER, DEFAULT_HEAD)
    stop_if_empty(text, "Type a sentence above, for example *The cat sat on the mat*, to see RoPE turn its queries "
                        "and keys.")
    labels = token_labels(text)
    length = len(labels)
    if length < 2:
        st.info("RoPE relates two positions: type at least two tokens.", icon=":material/edit:")
        st.stop()
    with st.spinner("Running SmolLM2 over your text, keeping every query and key..."):
        tp = rope_pass(text)
    freq, card = frequencies(), lm().card
    L, H = layer - 1, head - 1
    kv = H // (card.heads // card.kv_heads)

    st.subheader("1. The frequencies, read from the model", anchor=False)
    wl = freq.wavelengths
    described_metrics(("Base θ (rope_theta)", f"{freq.theta:,.0f}", "from the model's config"),
               ("Pairs per head", f"{freq.pairs}", f"{freq.head_dim} numbers per query or key"),
               ("Fastest pair: tokens per turn", f"{wl[0]:.2f}", f"θ₁ = {freq.inv_freq[0]:g} radian per token"),
               ("Slowest pair: tokens per turn", f"{wl[-1]:,.0f}",
                f"{wl[-1] / card.context_length:,.0f}× the {card.context_length:,}-token context"))
    cos, sin = rotations(length)
    left, right = st.columns(2, gap="medium")
    with left:
        show_chart(figure(angle_heatmap, cos, labels, title="cos(m·θᵢ) at your positions"),
                   partial(pd.DataFrame, {"position": np.repeat(np.arange(length), freq.pairs),
                                          "pair": np.tile(np.arange(1, freq.pairs + 1), length),
                                          "cos": cos.ravel(), "sin": sin.ravel()}),
                   "rope-rotation-table", "angles_chart")
    with right:
        show_chart(figure(wavelength_chart, wl, card.context_length, length,
                          title="Tokens per full turn of each pair"),
                   partial(pd.DataFrame, {"pair": np.arange(1, freq.pairs + 1), "radians_per_token": freq.inv_freq,
                                          "wavelength_tokens": wl}), "rope-wavelengths", "wavelengths_chart")
    st.caption(f"The rotation speeds come from the model's rotary module (its `inv_freq` buffer, type "
               f"“{freq.rope_type}”); they equal θ^(−2(i−1)/{freq.head_dim}) with θ from the config to "
               "within "
               f"{freq.formula_gap:.0e}. The table on the left is the model's own cos(m·θᵢ), computed for your "
               f"{length} tokens (download it with its sin column).")

    st.subheader(f"2. One pair of layer {layer}, head {head}, turning", anchor=False)
    c1, c2, c3 = st.columns(3)
    if length > 2:
        m = ranged_slider("Query position m", 1, length - 1, length - 1, "query", container=c1,
                          help="The token whose query is turned (positions count from 0, as RoPE does).")
    else:
        m = 1
        c1.caption("Query position m = 1: the second of your two tokens (positions count from 0).")
    n = ranged_slider("Key position n", 0, m, m - 1, "key", container=c2,
                      help="An earlier (or the same) token: the causal mask hides later ones.")
    pair = ranged_slider("Pair i", 1, freq.pairs, 1, "pair", container=c3,
                         help=f"1 turns fastest ({freq.inv_freq[0]:g} radian per token); {freq.pairs} slowest.")
    q, k = tp.at("q", L)[H], tp.at("k", L)[kv]
    q_rot, k_rot = tp.at("q_rot", L)[H], tp.at("k_rot", L)[kv]
    i = pair - 1
    q_pair, k_pair = as_pairs(q[m])[i], as_pairs(k[n])[i]
    q_turned, k_turned = as_pairs(q_rot[m])[i], as_pairs(k_rot[n])[i]     # the model's own rotated vectors
    trail = rotate_pairs(np.repeat(q_pair[None], length, 0), np.arange(length) * freq.inv_freq[i])
    parts = pair_contributions(q_rot[m], k_rot[n])
    left, right = st.columns([3, 2], gap="medium")
    with left:
        arrows = np.array([q_pair, k_pair, q_turned, k_turned])
        show_chart(figure(pair_rotation, q_pair, k_pair, q_turned, k_turned, trail, m, n,
                          title=f"Pair {pair} (dims {pair} and {pair + freq.head_dim // 2})"),
                   partial(pd.DataFrame, {"vector": ["query before RoPE", "key before RoPE", f"query at m={m}",
                                                     f"key at n={n}"], "first": arrows[:, 0], "second": arrows[:, 1]}),
                   f"rope-pair-{pair}", "pair_chart")
    with right:
        theta_i = float(freq.inv_freq[i])
        st.markdown(f"Query “{escape_markdown(labels[m])}” at m = {m}, key “{escape_markdown(labels[n])}” at "
                    f"n = {n}. Pair {pair} turns by θ{pair} = {theta_i:.4g} radian per token:")
        st.markdown(f"- query: m·θ{pair} = {m} × {theta_i:.4g} = **{m * theta_i:.3f} rad**\n"
                    f"- key: n·θ{pair} = {n} × {theta_i:.4g} = **{n * theta_i:.3f} rad**")
        st.markdown(f"Each arrow is turned by a rotation matrix and keeps its length; the angle between the two "
                    f"changes by (m − n)·θ{pair} = {(m - n) * theta_i:.3f} rad. This pair adds **{parts[i]:+.3f}** "
                    f"to the score: the two lengths times the cosine of that angle.")

    st.subheader("3. Every pair's share of the score", anchor=False)
    model_raw = float(tp.at("scores", L)[H, m, n]) * np.sqrt(freq.head_dim)
    described_metrics((f"Sum of the {freq.pairs} pairs", f"{parts.sum():.4f}", "q·k from the model's rotated q and k"),
               (f"The model's score × √{freq.head_dim}", f"{model_raw:.4f}",
                f"its attention score before the 1/{np.sqrt(freq.head_dim):g} scale"),
               ("Difference", f"{abs(parts.sum() - model_raw):.1e}", "float32 rounding"))
    show_chart(figure(pair_contribution_bars, parts, i, title=f"q·k of m = {m} and n = {n}, pair by pair"),
               partial(pd.DataFrame, {"pair": np.arange(1, freq.pairs + 1), "contribution": parts}),
               "rope-pair-contributions", "contributions_chart")

    st.subheader("4. The score depends only on the distance", anchor=False)
    span_label = st.segmented_control("Distances shown", list(SPANS), default="64 tokens", key="span",
                                      bind="query-params", help="The same two vectors, placed further and further "
                                      "apart.") or "64 tokens"
    distances = np.arange(SPANS[span_label] + 1)
    curve = score_by_distance(q[m], k[n], freq.inv_freq, distances)
    without = float(q[m].astype(np.float64) @ k[n].astype(np.float64))
    show_chart(figure(score_by_distance_chart, distances, curve, without, m - n, model_raw,
                      title="q·k of the same two vectors, m − n apart"),
               partial(pd.DataFrame, {"distance": distances, "score_with_rope": curve, "score_without_rope": without}),
               "rope-score-by-distance", "distance_chart")
    best = int(np.argmax(curve))
    st.caption(f"Only m − n enters the formula, so the curve is the same wherever the two tokens sit. At distance "
               f"{m - n} it gives {curve[m - n]:.4f}; the model's own score there is {model_raw:.4f} (diamond). These "
               f"two vectors would match best {best} token{'s' if best != 1 else ''} apart (score {curve[best]:.2f}); "
               "a head that looks at the previous token shows its peak at distance 1.")

    st.subheader("5. The proof on the whole model: shift every position", anchor=False)
    k_shift = whole_number_input("Shift every position by", 0, MAX_SHIFT, 100, "shift",
                                 help="The text keeps its tokens but starts at position k instead of 0.")
    check = shift(text, k_shift)
    described_metrics((f"Max |score difference|, all {card.layers} layers", f"{check.max_score_difference:.1e}",
                "every head and visible pair"),
               ("Layer 1 alone", f"{check.first_layer_difference:.1e}", "inputs identical, only RoPE differs"),
               ("Max |logit difference|", f"{check.max_logit_difference:.1e}", "the final prediction"))
    shift_verdict(check)

    st.subheader("6. Change the base, or turn RoPE off: perplexity", anchor=False)
    with st.spinner("Scoring your text under each setting..."):
        trained, off = text_perplexity(text), text_perplexity(text, rope=False)
        others = {name: text_perplexity(text, theta=base) for name, base in OTHER_BASES.items()}
        interpolated = text_perplexity(text, scale=0.5)
    described_metrics((f"Perplexity, RoPE as trained (θ = {freq.theta:,.0f})", f"{trained:,.2f}", "the model as is"),
               ("Perplexity, RoPE off", f"{off:,.2f}", f"{off / trained:,.1f}× the model's",
                "No rotation at all: attention sees no distances; only the causal mask carries order."),
               ("Perplexity, positions halved", f"{interpolated:,.2f}", "Position Interpolation by 2, no fine-tuning"))
    names = [f"as trained: {freq.theta:,.0f}", *others, "positions ÷ 2", "RoPE off"]
    values = [trained, *others.values(), interpolated, off]
    show_chart(figure(perplexity_bars, names, values, 0, title=f"Perplexity of your {length}-token text"),
               partial(pd.DataFrame, {"setting": names, "perplexity": values}), "rope-perplexity", "perplexity_chart")
    if length < 8:
        st.info(f"Your text has {length} tokens, so its perplexity rests on {length - 1} prediction(s), and the "
                "first one sees a single token, where no position can matter. Type a sentence or two to see RoPE's "
                "effect.", icon=":material/info:")
    st.caption("Perplexity = exp(mean surprise per next token) over your text. A 135M model scored on one short "
               "text: the differences between bases are small and can go either way on a given text; turning RoPE "
               "off is the large effect. Halving the positions is what Position Interpolation does before the "
               "fine-tuning that makes it work.")
