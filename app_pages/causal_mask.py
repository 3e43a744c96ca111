from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.causal import attention_map, mask_matrix, next_token_probability, sink_by_layer
from charts.distributions import next_token_bars
from engine.inside.causal_mask import even_first_token_share, first_token_share, later_share, next_token_share
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.causal import MAX_TOKENS, future_edit_section, mask_comparison, perplexities
from ui.charts import figure, show_chart
from ui.inputs import layer_and_head, stop_if_empty
from ui.text import described_metric

DEFAULT_TEXT = "She opened the door, looked outside, and saw that it had started to snow."
DEFAULT_WORD = "rain"
# Shown 1-based. On the default text this head sends over 90% of its weight to the NEXT token once unmasked.
DEFAULT_LAYER, DEFAULT_HEAD = 19, 8
PRESETS = [("A story sentence", DEFAULT_TEXT, DEFAULT_WORD),
           ("A list of facts", "The capital of France is Paris. The capital of Germany is Berlin. The capital of "
                               "Italy is Rome.", "Milan"),
           ("Python code", "def add(a, b):\n    return a + b", "c")]


def times(ratio: float) -> str:
    return f"{ratio:.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def use_preset(text: str, word: str) -> None:
    st.session_state["text"], st.session_state["word"] = text, word


def pair_table(cmp, layer: int, head: int) -> pd.DataFrame:
    q, k = np.indices((cmp.length, cmp.length)).reshape(2, -1)
    return pd.DataFrame({"layer": layer + 1, "head": head + 1, "query_position": q + 1,
                         "query_token": [cmp.tokens[i] for i in q], "key_position": k + 1,
                         "key_token": [cmp.tokens[j] for j in k], "weight_mask_on": cmp.masked[layer, head][q, k],
                         "weight_mask_removed": cmp.unmasked[layer, head][q, k]})


with concept_page("causal-mask"):
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80,
                        help=f"Up to {MAX_TOKENS} tokens; longer text is cut with a note.")
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/lightbulb: Try:", width="content")
        for i, (label, preset, word) in enumerate(PRESETS):
            st.button(label, key=f"preset-{i}", on_click=use_preset, args=(preset, word), width="content")
    stop_if_empty(text, "Type a sentence above, for example *She opened the door and saw that it had started to "
                        "snow.*, to see what the mask hides and what happens without it.")

    with st.spinner("Running SmolLM2 twice over your text: with the mask, and without it..."):
        cmp = mask_comparison(text)
    labels = [visible(t) for t in cmp.tokens]
    length = cmp.length
    if length < 2:
        st.info("A single token has nothing later to hide from: add a few words.", icon=":material/edit:")
        st.stop()

    st.subheader("1. The mask, and the model's attention with and without it", anchor=False)
    st.markdown("Every head of every layer adds the mask $M$ to its scores before the softmax. A score plus −∞ is −∞, "
                "and $e^{-\\infty} = 0$: a later token gets weight exactly zero, however well its key matches.")
    st.latex(r"\alpha_{ij} = \operatorname{softmax}_j\!\Big(\tfrac{q_i \cdot k_j}{\sqrt{d}} + M_{ij}\Big),\qquad "
             r"M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases}")
    left, right = st.columns(2, gap="medium", vertical_alignment="center")
    with left:
        show_chart(figure(mask_matrix, length, labels, title=f"The mask for your {length} tokens"),
                   partial(pd.DataFrame, np.where(np.triu(np.ones((length, length)), 1) > 0, "-inf", "0"),
                           index=cmp.tokens, columns=cmp.tokens),
                   name="causal-mask-matrix", key="mask")
    on_share, off_share = later_share(cmp.masked), later_share(cmp.unmasked)
    heads = on_share.size
    with right:
        described_metric(st, "Later-token weight, mask on", "0" if on_share.max() == 0 else f"{on_share.max():.2e}",
                         f"largest of all {heads} heads", help="Each query's weights on keys after it, summed, then "
                         "averaged over the queries: read from the model's own attention in every layer and head.")
        described_metric(st, "Later-token weight, no mask", f"{off_share.mean():.1%}",
                         f"mean of all {heads} heads", help="The same pass with the mask left out (a traced-forward "
                         "intervention): this much of each query's attention now goes to tokens after it.")

    pick_layer, pick_head = st.columns(2)
    layer, head = layer_and_head(pick_layer, pick_head, DEFAULT_LAYER, DEFAULT_HEAD)
    L, H = layer - 1, head - 1
    map_on, map_off = st.columns(2, gap="small")
    with map_on:
        show_chart(figure(attention_map, cmp.masked[L, H], labels, "Mask on (as trained)", "solid"),
                   partial(pair_table, cmp, L, H), name=f"attention-layer{layer}-head{head}-mask-on", key="map_on")
    with map_off:
        show_chart(figure(attention_map, cmp.unmasked[L, H], labels, "Mask removed", "solid"),
                   partial(pair_table, cmp, L, H), name=f"attention-layer{layer}-head{head}-mask-removed",
                   key="map_off")
    next_share = next_token_share(cmp.unmasked)
    best = np.unravel_index(np.argmax(next_share), next_share.shape)
    first_on = first_token_share(cmp.masked[L, H])
    st.caption(f"Rows are queries (the tokens attending), columns the keys they read, by position; the vermillion "
               f"line is the mask's edge, and left of it is all a query may read. With the mask, layer {layer} head "
               f"{head} puts {first_on:.1%} of its weight on the first token; without it, {off_share[L, H]:.0%} goes "
               f"right of the line, {next_share[L, H]:.0%} to the very next token. On your text the head that reads "
               f"the next token most is layer {best[0] + 1} head {best[1] + 1} ({next_share[best]:.0%}).")

    st.subheader("2. Remove the mask, and the model cheats", anchor=False)
    with_mask, without_mask = perplexities(text)
    c1, c2 = st.columns(2)
    c3, c4 = st.columns(2)
    described_metric(c1, "Perplexity, mask on", f"{with_mask.perplexity:,.2f}", f"over {len(with_mask.token_nll)} "
                     "predictions", help="exp(mean −ln p) of each next token of your text, each predicted from the "
                     "tokens before it: the model as trained.")
    described_metric(c2, "Perplexity, mask removed", f"{without_mask.perplexity:,.2f}",
                     times(without_mask.perplexity / with_mask.perplexity) + " the masked value",
                     help="The same text scored by the same weights, but every position could read the whole text.")
    described_metric(c3, "Top-1 hits, mask on", f"{with_mask.top1_accuracy:.0%}", "next token was its first guess")
    described_metric(c4, "Top-1 hits, mask removed", f"{without_mask.top1_accuracy:.0%}",
                     "next token was its first guess")
    if without_mask.perplexity < with_mask.perplexity:
        st.markdown(f"**Perplexity fell from {with_mask.perplexity:,.1f} to {without_mask.perplexity:,.1f}, and the "
                    "model got no smarter: it cheated.** Position *t* is asked for token *t*+1, and with the mask gone "
                    "that token sits in plain view, so heads that happen to look one step ahead copy the answer. "
                    "The same weights never learned to do this; they do it by accident. This is why training needs "
                    "the mask: it lets one pass score every position honestly at once.")
    else:
        st.markdown(f"**Here perplexity rose, from {with_mask.perplexity:,.1f} to {without_mask.perplexity:,.1f}.** The "
                    "answer is in view, but the model never learned to read ahead: every vector now mixes in tokens it "
                    "was never trained to see, and on this text that confuses it more than the leak helps. Try the "
                    "story sentence: there the leak wins.")
    probability = lambda p: np.exp(-np.asarray(p.token_nll, dtype=np.float64))  # noqa: E731
    show_chart(figure(next_token_probability, labels[1:], probability(with_mask), probability(without_mask),
                      title="Probability the model gave each actual next token"),
               partial(pd.DataFrame, {"position": range(2, length + 1), "token": cmp.tokens[1:],
                                      "probability_mask_on": probability(with_mask),
                                      "probability_mask_removed": probability(without_mask)}),
               name="next-token-probability-mask-on-off", key="cheat")

    st.markdown("**After the last token there is nothing to copy.** Generation only ever needs this one prediction, "
                "and removing the mask changes it too: the last position sees what it saw before, but every vector "
                "it reads has been looking ahead.")
    for column, guesses, name in zip(st.columns(2), (cmp.next_masked, cmp.next_unmasked), ("on", "removed")):
        with column:
            show_chart(figure(next_token_bars, [visible(t) for t in guesses.texts], guesses.probabilities,
                              list(guesses.ids), guesses.logits, title=f"Next token after your text, mask {name}"),
                       partial(pd.DataFrame, {"token": guesses.texts, "id": guesses.ids,
                                              "probability": guesses.probabilities}),
                       name=f"next-token-mask-{name}", key=f"next_{name}")

    st.subheader("3. Proof that nothing leaks backwards: change the last word", anchor=False)
    st.markdown("If the mask works, a token's vectors depend only on the tokens up to it. Change the last word and "
                "recompute: every earlier token must come out exactly the same. MiniLM, an encoder with no mask, is "
                "run beside it, and so is SmolLM2 with its mask removed.")
    result = future_edit_section(text, DEFAULT_WORD, key="edit")

    st.subheader("4. The attention sink the mask creates", anchor=False)
    sink_on, sink_off = first_token_share(cmp.masked).mean(-1), first_token_share(cmp.unmasked).mean(-1)
    even_on, even_off = even_first_token_share(length, True), even_first_token_share(length, False)
    peak = int(np.argmax(sink_on))
    s1, s2 = st.columns(2)
    described_metric(s1, f"On the first token, layer {peak + 1}, mask on", f"{sink_on[peak]:.0%}",
                     f"even spread would give {even_on:.0%}", help="Mean over the layer's heads and over queries 2 "
                     "to the last (query 1 can only read itself).")
    described_metric(s2, f"On the first token, layer {peak + 1}, mask removed", f"{sink_off[peak]:.0%}",
                     f"even spread would give {even_off:.0%}")
    show_chart(figure(sink_by_layer, sink_on, sink_off, even_on, even_off,
                      title="Mean attention weight on the first token, layer by layer"),
               partial(pd.DataFrame, {"layer": range(1, len(sink_on) + 1), "first_token_share_mask_on": sink_on,
                                      "first_token_share_mask_removed": sink_off}),
               name="attention-sink-by-layer", key="sink")
    change = "falls" if sink_off.mean() < sink_on.mean() else "rises"
    st.caption(f"Under the mask the first token is the only one every query can read, so heads with nothing useful to "
               f"fetch learned to park their weight there: an attention sink. Without the mask it is one visible token "
               f"among many, and its share, averaged over all layers, {change} from {sink_on.mean():.0%} to "
               f"{sink_off.mean():.0%}. How strong the sink is, and in which layers, differs from model to model.")
