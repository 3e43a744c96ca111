from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.residual import attribution_bars, exit_curve, head_attribution, lens_grid, stream_growth, token_trajectory
from engine.inside.residual import exit_perplexity, softmax, stream_sizes, trajectory
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty
from ui.jobs import follow
from ui.residual import MAX_TOKENS, logit_attribution, readout_job, stream, token_labels, token_text
from ui.text import described_metric, escape_markdown, large_number, ratio_delta

DEFAULT_TEXT = "The Eiffel Tower is in Paris, and the Colosseum is in"
CHOICES = 5   # the final top tokens a reader can follow or compare against
NOTHING = "nothing: its own logit"


def percent(p: float) -> str:
    return f"{100 * p:.2g}%" if p >= 1e-4 else "under 0.01%"


def quoted(token_id: int) -> str:
    return f"“{escape_markdown(visible(token_text(token_id)))}”"


with concept_page("residual-stream"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} tokens, so the lens grid keeps one readable column per token.")
    stop_if_empty(text, "Type the start of a sentence above, for example *The Eiffel Tower is in Paris, and the "
                        "Colosseum is in*, to read the model's guess after every block.")
    with st.spinner("Running SmolLM2 and keeping its residual stream at every block..."):
        tp = stream(text)
    labels = token_labels(text)
    length, layers = len(tp.ids), lm().card.layers
    final = softmax(tp.logits[-1])
    top = [int(i) for i in np.argsort(-final, kind="stable")[:CHOICES]]
    by_text = {}
    for i in top:                       # two ids that read the same keep the likelier one
        by_text.setdefault(visible(token_text(i)), i)

    st.subheader("1 · A running sum that only grows", anchor=False)
    position = ranged_slider("Token (position)", 1, length, length, "token",
                             help="The token whose stream is measured in this section.") if length > 1 else 1
    p = position - 1
    sizes = stream_sizes(tp, p)
    writes = np.concatenate([sizes.attention_rms, sizes.ffn_rms])
    biggest = int(np.argmax(writes))
    a, b, c = st.columns(3)
    described_metric(a, "Embedding RMS", f"{sizes.embedding_rms:.3g}", f"token {position} “{labels[p]}”")
    described_metric(b, f"Stream RMS after block {layers}", f"{sizes.stream_rms[-1]:.3g}",
                     f"{sizes.stream_rms[-1] / sizes.embedding_rms:,.0f}× the embedding")
    described_metric(c, "Largest single write", f"{writes[biggest]:.3g}",
                     f"block {biggest % layers + 1}'s {'attention' if biggest < layers else 'FFN'}")
    show_chart(figure(stream_growth, sizes.embedding_rms, sizes.stream_rms, sizes.attention_rms, sizes.ffn_rms,
                      title=f"The stream at token {position} and what each block adds to it"),
               partial(pd.DataFrame, {"block": range(1, layers + 1), "stream_rms_after": sizes.stream_rms,
                                      "attention_write_rms": sizes.attention_rms, "ffn_write_rms": sizes.ffn_rms}),
               name=f"stream-growth-token-{position}", key="growth")
    rebuilt = tp["resid_out"][0, p] - tp["attn_out"][0, p] - tp["down"][0, p] + \
        tp["attn_out"][:, p].sum(0) + tp["down"][:, p].sum(0)
    st.caption(f"Each block reads a normalized copy of the stream and adds its two outputs back. Checked: the "
               f"embedding plus all {2 * layers} writes rebuilds the final stream to within "
               f"{np.abs(rebuilt - tp['resid_out'][-1, p]).max():.1e} (float rounding). Nothing is overwritten, so "
               "what block 1 wrote is still there at block 30, unless a later block writes the opposite.")

    st.subheader("2 · The logit lens: read the stream after every block", anchor=False)
    lens_last = softmax(tp.lens.last_logits[-1])
    gap = float(np.abs(lens_last - final).max())
    lens_top = int(np.argmax(lens_last))
    st.markdown("SmolLM2's LM head is its embedding matrix (tied), and the final RMSNorm sits in front of it. The "
                "lens applies those two to the stream after **any** block, as if the model stopped there.")
    if lens_top == top[0] and gap < 1e-4:
        st.success(f"After block {layers} the lens **is** the model: its top guess {quoted(lens_top)} at "
                   f"{100 * lens_last[lens_top]:.2f}% equals the model's own prediction; the largest probability "
                   f"difference over all 49,152 tokens is {gap:.0e} ✓", icon=":material/check_circle:")
    else:
        st.warning(f"The lens after block {layers} differs from the model's output by up to {gap:.1e}.",
                   icon=":material/warning:")
    pick, _ = st.columns(2)
    # The options are the tokens themselves, so a share link reads ?follow=␣Rome (a link made for another text
    # names tokens not on offer here and falls back to the first).
    choice = pick.selectbox("Follow the token", list(by_text), key="follow", bind="query-params",
                            help=f"One of the model's {len(by_text)} most likely next tokens after your text, "
                                 "most likely first.")
    target = by_text.get(choice, top[0])
    path = trajectory(tp, target)
    above = np.nonzero(path.rank > 1)[0]
    settled = int(above[-1]) + 2 if above.size else 1
    a, b, c = st.columns(3)
    described_metric(a, "Top guess from block", f"{settled}" if settled <= layers else "never",
                     f"{quoted(target)} stays first after it" if settled <= layers else "not first even at the end")
    middle = layers // 2
    described_metric(b, f"Rank after block {middle}", f"{path.rank[middle - 1]:,}", percent(path.probability[middle - 1]))
    described_metric(c, f"Probability after block {layers}", f"{100 * path.probability[-1]:.1f}%",
                     f"rank {path.rank[-1]:,}")
    show_chart(figure(token_trajectory, path.probability, path.rank, visible(token_text(target)),
                      title=f"{visible(token_text(target))} as the next token, read after every block"),
               partial(pd.DataFrame, {"block": range(1, layers + 1), "probability": path.probability,
                                      "rank": path.rank, "lens_top_token_id": path.top_ids,
                                      "lens_top_probability": path.top_probability}),
               name="token-trajectory", key="trajectory")

    readout = follow(readout_job(text), what="lens grid and exit measurement")
    if readout is not None:
        guesses = [[visible(token_text(int(i))) for i in row] for row in readout.top_ids]
        finals = np.argmax(tp.logits, axis=-1)
        matches = readout.top_ids == finals[None, :]
        cells = st.toggle("Write the guesses in the cells", value=length <= 20, key="cells", bind="query-params",
                          help="Readable on a wide window; on a narrow one, hover the cells instead.")
        show_chart(figure(lens_grid, guesses, readout.top_probs, labels, matches, show_text=cells,
                          title="The lens's top guess, after every block and at every position"),
                   partial(pd.DataFrame, {"block": np.repeat(np.arange(1, layers + 1), length),
                                          "position": np.tile(np.arange(1, length + 1), layers),
                                          "token": labels * layers, "top_guess": sum(guesses, []),
                                          "probability": readout.top_probs.ravel(), "equals_final": matches.ravel()}),
                   name="logit-lens-grid", key="grid")
        first_match = [int(np.argmax(matches[:, q])) + 1 if matches[:, q].any() else None for q in range(length)]
        settled_rows = [f for f in first_match if f is not None]
        st.caption(f"Orange dots: the guess equals the model's final prediction at that position. On average over "
                   f"the positions, the final answer first appears as the lens's top guess after block "
                   f"{np.mean(settled_rows):.1f} of {layers}; {matches.mean():.0%} of all cells already show it. "
                   "Hover a cell for its guess and probability.")

    st.subheader("3 · Who wrote the answer: direct logit attribution", anchor=False)
    against, _ = st.columns(2)
    rival = against.selectbox("Compared with", [NOTHING] + [t for t in by_text if by_text[t] != target], key="versus",
                              bind="query-params", help="Attribute the followed token's logit, or its lead over "
                              "another candidate (the difference cancels what both share).")
    versus = by_text.get(rival)
    attr = logit_attribution(text, target, versus)
    what = f"logit of {quoted(target)}" + (f" minus that of {quoted(versus)}" if versus is not None else "")
    parts = np.concatenate([[attr.embedding], attr.attention, attr.ffn])
    names = ["the embedding"] + [f"block {l + 1}'s attention" for l in range(layers)] + \
        [f"block {l + 1}'s FFN" for l in range(layers)]
    lead = int(np.argmax(parts))
    head_layer, head = np.unravel_index(int(np.argmax(attr.heads)), attr.heads.shape)
    a, b, c = st.columns(3)
    described_metric(a, "Sum of all parts", f"{attr.total:.3f}", f"model: {attr.model_value:.3f}",
                     help="Embedding + 30 attention writes + 30 FFN writes, read along the token's unembedding row, "
                          f"with the final norm's divisor ({attr.scale:.3f}) held fixed.")
    described_metric(b, "Largest push", f"{parts[lead]:+.2f}", names[lead])
    described_metric(c, "Largest head", f"{attr.heads[head_layer, head]:+.2f}", f"block {head_layer + 1}, head {head + 1}")
    st.markdown(f"Attributing the **{what}** at the last position.")
    show_chart(figure(attribution_bars, attr.attention, attr.ffn, attr.embedding, title="Each block's share"),
               partial(pd.DataFrame, {"block": range(1, layers + 1), "attention": attr.attention, "ffn": attr.ffn}),
               name="logit-attribution", key="attribution")
    group = lm().card.heads // lm().card.kv_heads
    show_chart(figure(head_attribution, attr.heads, group, title="Each attention head's share"),
               partial(pd.DataFrame, {"block": np.repeat(np.arange(1, layers + 1), attr.heads.shape[1]),
                                      "head": np.tile(np.arange(1, attr.heads.shape[1] + 1), layers),
                                      "contribution": attr.heads.ravel()}),
               name="head-attribution", key="heads")
    st.caption(f"Grouped-query attention: query heads 1-{group} read key/value head 1, and so on, but each query "
               f"head writes through its own 64 columns of W_O, so each has its own share. The final norm divides "
               "the stream by one number; holding it fixed makes the parts add up exactly. Direct attribution "
               "misses indirect effects: a head can matter by changing what later blocks do.")

    st.subheader("4 · Exit early: stop after L blocks, measured", anchor=False)
    exit_after = st.slider("Exit after block L", 1, layers, 24, key="exit", bind="query-params",
                           help="Run only the first L blocks, then the final norm and the LM head: exactly the "
                                "lens after block L, applied at every position of your text.")
    lens_exit = softmax(tp.lens.last_logits[exit_after - 1])
    guess = int(np.argmax(lens_exit))
    if length < 2:
        st.info("Perplexity needs at least two tokens. Add a word to measure the cost of exiting early.",
                icon=":material/edit:")
        st.stop()
    with st.spinner(f"Running the first {exit_after} blocks..."):
        early, full = exit_perplexity(lm(), tp.ids, exit_after), exit_perplexity(lm(), tp.ids, layers)
    a, b, c = st.columns(3)
    described_metric(a, f"Perplexity, all {layers} blocks", large_number(full.perplexity),
                     f"top-1 right {full.top1_accuracy:.0%}")
    b.metric(f"Exit after {exit_after}", large_number(early.perplexity), ratio_delta(early.perplexity, full.perplexity),
             delta_color="inverse", help="Measured: a real pass that stops after L blocks, scored on every next "
                                         "token of your text.")
    described_metric(c, "Its next-token guess", visible(token_text(guess)), f"{100 * lens_exit[guess]:.1f}% "
                     f"(full model: {visible(token_text(top[0]))})")
    if readout is not None:
        sweep = readout.sweep
        show_chart(figure(exit_curve, sweep.exit_layers, sweep.perplexities, exit_after,
                          title="Perplexity of your text when the model stops after L blocks"),
                   partial(pd.DataFrame, {"exit_after_blocks": sweep.exit_layers, "perplexity": sweep.perplexities,
                                          "top1_accuracy": sweep.top1}),
                   name="exit-perplexity", key="exit_curve")
        early_exits = [(l, q) for l, q in zip(sweep.exit_layers, sweep.perplexities) if l < layers]
        close = next((l for l, q in early_exits if q <= 2 * full.perplexity), None)
        if close is not None:
            note = f"Measured on your text: exiting after {close} blocks already keeps the perplexity within 2× " \
                   "of the full model's."
        elif early_exits:
            note = f"Measured on your text: no early exit comes within 2× of the full model's perplexity; even " \
                   f"stopping after {early_exits[-1][0]} blocks gives {large_number(early_exits[-1][1])}."
        else:
            note = ""
        st.caption(note + ("" if sweep.complete else f" Stopped after {len(sweep.exit_layers)} of {layers + 1} "
                                                     "exit points."))
    else:
        st.info("The curve over every exit point appears when the measurement in section 2 finishes.",
                icon=":material/hourglass_top:")
    st.caption("Adaptive-depth (early-exit) methods stop when an intermediate layer is already confident. SmolLM2 "
               "was trained only on its last block's output, so nothing makes its earlier blocks readable by the "
               "final norm and LM head; a tuned lens (Belrose et al. 2023) trains a small map per block for that.")
