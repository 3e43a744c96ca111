from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.interventions import loss_comparison
from charts.norms import gain_profile, normalized_vector, peak_ratio_map, rms_through_layers
from engine.inside.norms import MASSIVE_RATIO, massive_activations, normalize_by_hand
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty
from ui.norms import MAX_TOKENS, NORM_LABELS, model_gains, profile, token_labels, unit_gain_perplexities
from ui.text import described_metric, escape_markdown, large_number, latex_number

DEFAULT_TEXT = ("The Eiffel Tower was finished in 1889 for the World's Fair in Paris. For forty years it was the "
                "tallest building in the world.")
GAIN_OF = {"attention": "attention norm", "ffn": "FFN norm", "final": "final norm"}


def quoted(label: str) -> str:
    return f"“{escape_markdown(label)}”"


with concept_page("layer-norm"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80)
    stop_if_empty(text, "Type a sentence or two above to watch SmolLM2's norms rescale its residual stream.")
    with st.spinner("Running SmolLM2 over your text and measuring every norm..."):
        prof = profile(text)
    labels = token_labels(text)
    attention_gains, ffn_gains, final_gain = model_gains()
    length, layers = prof.length, prof.layers

    pick_token, pick_layer = st.columns(2)
    position = ranged_slider("Token (position)", 1, length, length, "token", container=pick_token,
                             help="The token whose vector is followed below. It starts on the last token.") \
        if length > 1 else 1
    pick_token.caption(f"Token {position} of {length}: {quoted(labels[position - 1])}")
    layer = pick_layer.slider(f"Block (1-{layers})", 1, layers, 12, key="layer", bind="query-params",
                              help="The block whose attention norm is redone by hand in section 2.")
    p, L = position - 1, layer - 1

    st.subheader("1 · The stream grows; what the norms hand on does not", anchor=False)
    growth = prof.rms_in_attn[-1, p] / prof.rms_in_attn[0, p]
    a, b, c = st.columns(3)
    described_metric(a, "Stream RMS, block 1", f"{prof.rms_in_attn[0, p]:.3g}", "the embedding row")
    described_metric(b, f"Stream RMS, block {layers}", f"{prof.rms_in_attn[-1, p]:.3g}", f"{growth:,.0f}× larger",
                     help="Every block adds its attention and FFN output to the stream, and nothing shrinks it.")
    out_lo, out_hi = prof.rms_out_attn[:, p].min(), prof.rms_out_attn[:, p].max()
    described_metric(c, "Norm outputs' RMS", f"{out_lo:.2f}–{out_hi:.2f}", f"{layers} attention norms",
                     help="After dividing by the RMS every vector has RMS 1; the learned gain g then sets each "
                          "channel's scale, so the output's RMS is that of g (weighted by the vector's shape).")
    show_chart(figure(rms_through_layers, prof.rms_in_attn[:, p], prof.rms_out_attn[:, p], prof.rms_in_ffn[:, p],
                      prof.rms_out_ffn[:, p], float(prof.rms_in_final[p]), float(prof.rms_out_final[p]),
                      title=f"Token {position} “{labels[p]}”: RMS before (blue) and after (green) each norm"),
               partial(pd.DataFrame, {"block": range(1, layers + 1), "rms_entering_attention_norm": prof.rms_in_attn[:, p],
                                      "rms_attention_norm_output": prof.rms_out_attn[:, p],
                                      "rms_entering_ffn_norm": prof.rms_in_ffn[:, p],
                                      "rms_ffn_norm_output": prof.rms_out_ffn[:, p]}),
               name=f"norm-sizes-token-{position}", key="sizes")
    st.caption(f"Log scale. Into the final norm goes a vector of RMS {prof.rms_in_final[p]:.3g}; out comes one of RMS "
               f"{prof.rms_out_final[p]:.3g}. Without the norms each block would see inputs whose size depends on how "
               f"deep it sits and on the token: for this token the last block's input is {growth:,.0f} times the "
               "first block's.")

    st.subheader("2 · One vector normalized by hand", anchor=False)
    hand = normalize_by_hand(prof, attention_gains, L, p)
    st.markdown(f"The vector entering block {layer} at token {position} {quoted(labels[p])}, normalized in numpy "
                "with the formula, next to the output the model computed:")
    st.latex(rf"\mathrm{{RMS}} = \sqrt{{\mathrm{{mean}}(x^2) + \varepsilon}} = "
             rf"\sqrt{{{latex_number(hand.mean_square, 6)} + {latex_number(hand.eps, 2)}}} = {latex_number(hand.rms, 6)}")
    top = int(np.argmax(np.abs(hand.x)))
    st.latex(rf"y_{{{top + 1}}} = g_{{{top + 1}}}\,\frac{{x_{{{top + 1}}}}}{{\mathrm{{RMS}}}} = {hand.gain[top]:.4f}"
             rf"\times\frac{{{latex_number(hand.x[top])}}}{{{latex_number(hand.rms, 6)}}} = "
             rf"{latex_number(hand.rms_norm[top], 6)}")
    st.caption(f"The largest channel, d{top + 1}, filled in; the model's own output there is "
               f"{hand.model_output[top]:.6g}.")
    a, b = st.columns(2)
    c, d = st.columns(2)
    described_metric(a, "RMS of x", f"{hand.rms:.4g}", f"ε = {hand.eps:g} (read from the model)")
    described_metric(b, "By hand vs model", f"{hand.max_abs_difference:.1e}", "largest |difference| over 576 channels")
    described_metric(c, "Mean of x", f"{hand.mean:+.3g}", f"std {np.sqrt(hand.variance):.4g}",
                     help="RMS² = mean² + variance: RMSNorm divides by the RMS, LayerNorm subtracts the mean and "
                          "divides by the standard deviation.")
    described_metric(d, "LayerNorm vs RMSNorm", f"cos {hand.ln_vs_rms_cosine:.4f}",
                     f"max |difference| {hand.ln_vs_rms_max_difference:.3g}",
                     help="LayerNorm applied to the same vector with the same gain (and no bias). Cosine 1 would be "
                          "the same direction.")
    if hand.max_abs_difference < 1e-5:
        st.success(f"By hand equals the model's RMSNorm output: max |difference| = {hand.max_abs_difference:.1e} "
                   "over all 576 channels ✓", icon=":material/check_circle:")
    else:
        st.warning(f"By hand differs from the model by up to {hand.max_abs_difference:.2e}.", icon=":material/warning:")
    show_chart(figure(normalized_vector, hand.x, hand.model_output, hand.rms_norm, hand.layer_norm,
                      title=f"Block {layer}'s attention norm at token {position}"),
               partial(pd.DataFrame, {"channel": range(1, hand.x.size + 1), "x": hand.x, "gain": hand.gain,
                                      "rmsnorm_by_hand": hand.rms_norm, "rmsnorm_model": hand.model_output,
                                      "layernorm_same_gain": hand.layer_norm}),
               name=f"normalized-block-{layer}-token-{position}", key="by_hand")
    st.caption(f"LayerNorm would first subtract the mean ({hand.mean:+.3g}) and divide by the standard deviation "
               f"({np.sqrt(hand.variance):.4g}) instead of the RMS ({hand.rms:.4g}). Here the mean is "
               f"{abs(hand.mean) / hand.rms:.1%} of the RMS, so the two recipes nearly agree on this vector; RMSNorm "
               "skips the mean (one statistic instead of two) and the bias.")

    st.subheader("3 · Massive activations", anchor=False)
    found = massive_activations(prof)
    if found:
        biggest = max(found, key=lambda m: abs(m.value))
        channels = sorted({m.channel for m in found})
        st.markdown(f"In {len(found)} of the {layers * length} (block, token) cells, one channel of the stream is "
                    f"more than {MASSIVE_RATIO:.0f}× the vector's median |value|. The largest value: channel "
                    f"d{biggest.channel + 1} = {biggest.value:,.1f} at token {biggest.position + 1} "
                    f"{quoted(labels[biggest.position])} entering block {biggest.layer + 1}, "
                    f"{biggest.ratio:,.0f}× that vector's median. Channels involved: "
                    + ", ".join(f"d{ch + 1}" for ch in channels[:8]) + (" and more" if len(channels) > 8 else "") + ".")
    else:
        st.markdown(f"No channel in this text exceeds {MASSIVE_RATIO:.0f}× its vector's median.")
    show_chart(figure(peak_ratio_map, prof.peak_ratio, prof.peak_channel, prof.peak_value, labels,
                      title="Largest channel ÷ median channel of the stream entering each block"),
               partial(pd.DataFrame, {"block": np.repeat(np.arange(1, layers + 1), length),
                                      "position": np.tile(np.arange(1, length + 1), layers),
                                      "token": labels * layers, "peak_channel": prof.peak_channel.ravel() + 1,
                                      "peak_value": prof.peak_value.ravel(), "ratio": prof.peak_ratio.ravel()}),
               name="massive-activations", key="massive")
    st.caption("RMSNorm divides the whole vector by its RMS, so where one channel is huge it sets the RMS almost "
               "alone and every other channel comes out small. Sun et al. (2024) found such activations in many "
               "LLMs, often on the first token or on delimiters, nearly constant across inputs, working like a bias.")

    st.subheader("4 · The learned gain g", anchor=False)
    which = st.segmented_control("Gain of", list(GAIN_OF), format_func=GAIN_OF.get, default="attention",
                                 key="gain_of", bind="query-params", required=True) or "attention"
    gain = {"attention": attention_gains[L], "ffn": ffn_gains[L], "final": final_gain}[which]
    where = "the final norm" if which == "final" else f"block {layer}'s {GAIN_OF[which]}"
    a, b = st.columns(2)
    described_metric(a, "Mean gain", f"{gain.mean():.3f}", where)
    described_metric(b, "Range", f"{gain.min():.2f} – {gain.max():.2f}", f"{(gain < 0).sum()} of {gain.size} negative",
                     help="A negative gain flips that channel's sign on its way into the layer.")
    show_chart(figure(gain_profile, gain, [int(prof.peak_channel[L, p])], title=f"The gain of {where}, per channel"),
               partial(pd.DataFrame, {"channel": range(1, gain.size + 1), "gain": gain}),
               name=f"gain-{which}-block-{layer}", key="gain")

    st.subheader("5 · Experiment: set the gains to 1", anchor=False)
    chosen = st.multiselect("Norms whose gain becomes 1", list(NORM_LABELS), default=["final"], key="unit",
                            bind="query-params", format_func=NORM_LABELS.get,
                            help="The traced forward reruns SmolLM2 with g = 1 in the chosen norms: they still "
                                 "divide by the RMS but no longer rescale each channel.") or []
    if length < 2 or not chosen:
        st.info("Pick at least one norm, on a text of two tokens or more, to measure what the learned gains are "
                "worth.", icon=":material/science:")
        st.stop()
    with st.spinner("Running SmolLM2 with and without the gains..."):
        base, changed = unit_gain_perplexities(text, tuple(chosen))
    change = ", ".join(NORM_LABELS[n] for n in chosen)
    a, b, c = st.columns(3)
    described_metric(a, "Perplexity as trained", f"{base.perplexity:,.2f}",
                     f"next token top-1 right {base.top1_accuracy:.0%}")
    described_metric(b, "With g = 1", large_number(changed.perplexity), f"top-1 right {changed.top1_accuracy:.0%}",
                     help=f"Gains set to 1 in {change}.")
    described_metric(c, "Change", f"{large_number(changed.perplexity / base.perplexity)}×", "perplexity ratio")
    show_chart(figure(loss_comparison, labels[1:], base.token_nll, changed.token_nll, f"g = 1 in {change}",
                      title="Loss on each next token of your text"),
               partial(pd.DataFrame, {"position": range(2, length + 1), "token": labels[1:],
                                      "loss_nats_as_trained": base.token_nll, "loss_nats_unit_gain": changed.token_nll}),
               name="unit-gain-losses", key="unit_gain")
    negative = sum(int((g < 0).sum()) for g in (attention_gains, ffn_gains, final_gain))
    count = attention_gains.size + ffn_gains.size + final_gain.size
    st.caption(f"The gains are not decoration: the weights after each norm were trained to read channels at the "
               f"scales the gains set ({negative:,} of the model's {count:,} gains are even negative). What a 135M "
               "model cannot show here is training, where the norms' main job, keeping a deep stack's gradients "
               "stable, is done.")
