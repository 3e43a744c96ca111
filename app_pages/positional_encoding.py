from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.positions import offset_similarity, order_bars, sinusoid_heatmap
from engine.inside.positions import ORIGINAL_BASE, largest_shift_change, sinusoidal_encoding
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty, whole_number_input
from ui.layout import described_metrics
from ui.positions import MAX_SHIFT, MAX_TOKENS, facts, shift, shuffle_experiment

DEFAULT_TEXT = ("Every morning the old baker unlocked his shop at six, lit the ovens, swept the floor and set out "
                "the first warm loaves of")
DIMENSIONS = [16, 32, 64, 128, 256, 512]
BASES = {"10,000 (the original)": ORIGINAL_BASE, "100,000": 100_000.0, "100 (fast)": 100.0}


def offset_curves(positions: int, d: int, base: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """PE(p) . PE(p + k) for k = 0..positions-1 from three starting positions p."""
    starts = sorted({0, positions // 4, positions // 2})
    table = sinusoidal_encoding(starts[-1] + positions, d, base)
    offsets = np.arange(positions)
    return offsets, {f"from p = {p}": table[p + offsets] @ table[p] for p in starts}


def percent(share: float) -> str:
    """A share as a percentage; a tiny one (float rounding) with enough digits to show it is not exactly 0."""
    return f"{100 * share:.1f}%" if share >= 0.001 else f"{100 * share:.4f}%"


with concept_page("positional-encoding"):
    st.subheader("1. The original recipe: sinusoids added to each token", anchor=False)
    c1, c2, c3 = st.columns(3)
    positions = c1.slider("Positions", 16, 512, 100, 4, key="positions", bind="query-params",
                          help="How many positions (rows) to compute, counted from 0.")
    d = c2.select_slider("Dimensions d", DIMENSIONS, value=128, key="d", bind="query-params",
                         help="The width of the encoding; in the original it equals the model width d_model.")
    base_label = c3.selectbox("Base", list(BASES), key="base", bind="query-params",
                              help="10,000 in “Attention Is All You Need”. A larger base slows the slow dimensions "
                                   "further; a small one makes every dimension repeat quickly.") or list(BASES)[0]
    base = BASES[base_label]
    divisor = f"{base:,.0f}".replace(",", "{,}") + f"^{{2i/{d}}}"     # {,}: no space after LaTeX's comma
    with st.container(horizontal=True, horizontal_alignment="center", gap="large"):   # wraps when narrow
        for wave, index in (("sin", "2i"), ("cos", "2i+1")):
            st.latex(rf"PE_{{(pos,\,{index})}} = \{wave}\!\left(\frac{{pos}}{{{divisor}}}\right)", width="content")
    table = sinusoidal_encoding(positions, d, base)
    offsets, curves = offset_curves(positions, d, base)
    left, right = st.columns(2, gap="medium")
    with left:
        show_chart(figure(sinusoid_heatmap, table, base, title=f"The {positions} × {d} table, by formula"),
                   partial(pd.DataFrame, table, columns=[f"dim_{j}" for j in range(d)]),
                   f"sinusoidal-{positions}x{d}", "sinusoids_chart")
    with right:
        show_chart(figure(offset_similarity, offsets, curves, title="Dot product of positions k apart"),
                   partial(pd.DataFrame, {"offset": offsets, **curves}), "sinusoid-offset-similarity", "offsets_chart")
    st.caption(f"Left: column 0 flips sign every π ≈ 3.14 positions; the last pair's wavelength is "
               f"{2 * np.pi * base ** ((d - 2) / d):,.0f} positions. Right: the dot product of two encodings depends "
               "only on how far apart they are, so the three curves coincide; a layer can read relative distance "
               "from it. These numbers are computed from the formula: no model on this page reads them.")

    st.subheader("2. What SmolLM2 has instead", anchor=False)
    f, card = facts(), lm().card
    described_metrics(("Position parameters", f"{f.position_parameters:,}", "no position table at all",
                "Every parameter was scanned for a position-shaped name or a dimension equal to the context length."),
               ("Input embedding", f"{f.token_table[0]:,} × {f.token_table[1]}", "token ids only"),
               ("Where position enters", f"{f.layers} layers", f"RoPE on q and k, base {f.rope_theta:,.0f}"),
               ("A learned table would cost", f"{f.learned_table_parameters / 1e6:.2f}M",
                f"{f.learned_table_parameters / f.parameters:.1%} of the model ({f.context_length:,} rows)"))
    st.markdown(f"Read from the live model: SmolLM2's first step looks up one {f.d_model}-number row per token id "
                "and adds nothing else. Its position information is the rotary module's "
                f"{f.inv_freq.size} frequencies (the buffer `{f.rotary_buffers[0]}`, computed from the base, not "
                "learned), and it is applied inside every attention layer, to queries and keys only. The same "
                f"sinusoids as above, with the base {f.rope_theta:,.0f} and {2 * f.inv_freq.size} dimensions per "
                "head, but they **turn** q and k "
                "instead of being **added** to the token.")
    st.page_link("app_pages/rope.py", label="How RoPE turns queries and keys, on the live model",
                 icon=":material/arrow_forward:")

    st.subheader("3. Shuffle the words: does SmolLM2 notice?", anchor=False)
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help="End mid-sentence: the experiment compares the next word predicted after your text "
                             "with the one predicted after a shuffled copy.")
    seed = whole_number_input("Shuffle seed", 0, 1_000_000, 0, "seed", help="Another seed, another order.")
    stop_if_empty(text, "Type a sentence above, for example *The cat sat on the mat and the dog slept by the*, to "
                        "shuffle its words.")
    with st.spinner("Running SmolLM2 six times: your text and its shuffle, in three settings..."):
        result = shuffle_experiment(text, seed)
    if result.shuffled_text is None:
        st.info("Too few words to shuffle: the first and last words stay in place, so type at least four words.",
                icon=":material/edit:")
        st.stop()
    st.markdown("**Shuffled** (every word between the first and the last moved; the same tokens, so the model "
                "sees exactly the same ids):")
    st.text(result.shuffled_text)
    described_metrics(*[(e.name, percent(e.total_variation),
                  f"top: {visible(result.token_texts[e.original_top[0][0]])} {e.original_top[0][1]:.0%} → "
                  f"{visible(result.token_texts[e.shuffled_top[0][0]])} {e.shuffled_top[0][1]:.0%}",
                  f"The share of next-token probability that moves (total variation). KL divergence: "
                  f"{e.kl_nats:.3g} nats.") for e in result.effects])
    shares = [e.total_variation for e in result.effects]
    show_chart(figure(order_bars, [e.name for e in result.effects], shares, [percent(s) for s in shares],
                      title="How much the next-token prediction changes"),
               partial(pd.DataFrame, {"setting": [e.name for e in result.effects],
                                      "probability_moved": shares,
                                      "kl_nats": [e.kl_nats for e in result.effects]}),
               "shuffle-effect", "shuffle_chart")
    real, masked, blind = result.effects
    st.markdown(f"With RoPE the model notices the shuffle ({100 * real.total_variation:.0f}% of its prediction "
                f"moves). With RoPE off it still notices a little ({100 * masked.total_variation:.1f}%): the causal "
                "mask lets position 5 see 5 tokens and position 20 see 20, and from the second layer on that "
                "difference carries order. Only with the mask removed too does the model become truly order-blind: "
                f"{percent(blind.total_variation)} moves, float rounding.")

    with_rope, without_rope = real.original_perplexity, masked.original_perplexity   # from the same passes
    described_metrics(("Perplexity of your text, RoPE on", f"{with_rope:,.2f}", "the model as trained"),
               ("Perplexity, RoPE off", f"{without_rope:,.2f}", f"{without_rope / with_rope:,.1f}× the model's",
                "The same model with no rotation: only the causal mask carries order."))

    st.subheader("4. Shift every position: absolute encodings move, RoPE does not", anchor=False)
    k_shift = whole_number_input("Shift every position by", 0, MAX_SHIFT, 100, "shift",
                                 help="Your text keeps its tokens but starts at position k instead of 0.")
    check = shift(text, k_shift)
    moved = largest_shift_change(card.d_model, result.tokens, k_shift)
    described_metrics(("SmolLM2 (RoPE): max |attention score change|", f"{check.max_score_difference:.1e}",
                f"all {f.layers} layers, every head, measured"),
               ("Sinusoids added to the input: max |change|", f"{moved:.2f}",
                f"of values in ±1, {card.d_model} wide (formula)"))
    if check.max_score_difference <= 1e-4:
        st.success(f"Scores equal to within 1e-4 ✓ after a shift of {k_shift:,}: RoPE only sees distances.",
                   icon=":material/check_circle:")
    else:
        st.info("Above 1e-4 for this shift: the angles m·θ are rounded in float32, more so at large positions. In "
                "exact arithmetic the shift changes nothing.", icon=":material/info:")
