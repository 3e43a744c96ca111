from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.neurons import ablation_bars, along_text, logit_effect_bars, neuron_values, parameter_bars
from engine.inside.neurons import neuron_examples
from engine.tokens.offsets import visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.feed_forward import MAX_TOKENS, activations, corpus_job, silencing, split, written
from ui.inputs import ranged_slider, stop_if_empty, whole_number_input
from ui.jobs import follow
from ui.sampling import chart_label, token_texts
from ui.text import described_metric, escape_markdown

# (label, text, 1-based layer): on each, the layer's most active neuron at the last token has a clear story.
PRESETS = [("Counting", "One, two, three, four,", 27), ("A capital city", "The capital of France is", 25),
           ("A language", "She was born in Paris, so her native language is", 26)]
DEFAULT_TEXT, DEFAULT_LAYER = PRESETS[0][1], PRESETS[0][2]
MEASURES = {"product": "product", "gate": "gate", "up": "up", "SiLU(gate)": "act"}
RANKED = 20   # neurons listed per token


def in_line(text: str) -> str:
    """Context around a token on one table row: line breaks and tabs made visible, spaces kept."""
    return text.replace("\n", "↵ ").replace("\t", "⇥")


def bits(kl: float) -> str:
    return f"{kl:.4f}" if kl >= 1e-4 or kl == 0 else f"{kl:.1e}"


def use_preset(text: str, layer: int) -> None:
    st.session_state.update(text=text, layer=layer, rank=1, neuron=0.0)
    st.session_state.pop("token", None)   # the last token of the new text


with concept_page("feed-forward"):
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/science: **Try:**", width="content")
        for i, (label, text, layer) in enumerate(PRESETS):
            st.button(f"{label} (layer {layer})", key=f"preset-{i}", on_click=use_preset, args=(text, layer),
                      width="content")
    text = prompt_input("text", DEFAULT_TEXT, "Text", max_tokens=MAX_TOKENS, height=80)
    card = lm().card
    pick_layer, pick_token = st.columns(2)
    layer = pick_layer.slider(f"Layer (1-{card.layers})", 1, card.layers, DEFAULT_LAYER, key="layer",
                              bind="query-params", help="Every layer has its own FFN with its own "
                              f"{card.ffn_dim:,} neurons. Early layers react to spelling and local patterns; "
                              "late layers to what the next token should be.")
    stop_if_empty(text, "Type a text above, or pick a preset, to see which of the FFN's neurons fire on it.")

    acts = activations(text, layer - 1)
    labels = [visible(t) for t in token_texts(acts.ids)]
    length = len(labels)
    position = ranged_slider("Token (position)", 1, length, length, "token", container=pick_token,
                             help="The token whose neurons are shown. The last one's neurons shape the "
                                  "prediction of the next token.") if length > 1 else 1
    pick_token.caption(f"Token {position} of {length}: “{escape_markdown(labels[position - 1])}”")
    i = position - 1
    ranked = acts.ranked(i, RANKED)
    product = acts.product[i]

    st.subheader(f"Layer {layer}, token {position} “{escape_markdown(labels[i])}”: all {card.ffn_dim:,} neurons",
                 anchor=False)
    m1, m2, m3 = st.columns(3)
    described_metric(m1, "Neurons with gate > 0", f"{int((acts.gate[i] > 0).sum()):,}", f"of {card.ffn_dim:,}",
                     help="SiLU lets a positive gate through almost unchanged and squeezes a negative one "
                          "towards 0 (never below −0.28): the others pass on little.")
    described_metric(m2, "Most active neuron", f"{ranked[0] + 1}", f"product {product[ranked[0]]:+.2f}",
                     help="Ranked by |product|: the size of what the neuron adds to the residual stream.")
    top_share = float(np.abs(product[ranked]).sum() / np.abs(product).sum())
    described_metric(m3, f"Top {RANKED}'s share", f"{100 * top_share:.1f}%",
                     "of all |product|",
                     help=f"The {RANKED} most active neurons ({100 * RANKED / card.ffn_dim:.1f}% of them) hold this "
                          "part of the sum of every neuron's |product|: a few neurons carry a large part of the "
                          "layer's output at any one token.")

    pick_rank, pick_number = st.columns(2)
    rank = pick_rank.slider("Neuron in focus: rank at this token (1 = most active)", 1, RANKED, 1, key="rank",
                            bind="query-params")
    number = whole_number_input(f"…or a neuron number (1-{card.ffn_dim:,}; 0 = use the rank)", 0, card.ffn_dim,
                                0, "neuron", container=pick_number,
                                help="Type a neuron's number to follow it across tokens, texts and layers.")
    neuron = number - 1 if number else int(ranked[rank - 1])
    shown = st.segmented_control(
        "Show", list(MEASURES), default="product", key="show", bind="query-params",
        help="gate = w_gate·x and up = w_up·x are the two dot products each neuron takes; SiLU(gate) is the "
             "gate after the activation; product = SiLU(gate) × up is what the neuron passes on.") or "product"
    values = acts.measure(MEASURES[shown])[i]
    show_chart(figure(neuron_values, values, [int(n) for n in ranked], neuron, shown,
                      title=f"{shown} of each neuron (orange: top {RANKED}, red: {neuron + 1})"),
               partial(pd.DataFrame, {"neuron": np.arange(1, card.ffn_dim + 1), "gate": acts.gate[i],
                                      "up": acts.up[i], "silu_gate": acts.act[i], "product": product}),
               name=f"ffn-layer{layer}-token{position}", key="neurons")
    with st.expander(f"The {RANKED} most active neurons at this token"):
        st.dataframe(pd.DataFrame({"rank": range(1, RANKED + 1), "neuron": ranked + 1, "gate": acts.gate[i][ranked],
                                   "SiLU(gate)": acts.act[i][ranked], "up": acts.up[i][ranked],
                                   "product": product[ranked]}), hide_index=True, width="stretch")

    g, a, u, p = (float(x[i, neuron]) for x in (acts.gate, acts.act, acts.up, acts.product))
    st.subheader(f"Neuron {neuron + 1} of layer {layer}", anchor=False)
    factor = f"({u:.3f})" if u < 0 else f"{u:.3f}"
    st.markdown(f"At token {position}: $\\text{{gate}} = {g:.3f}$, $\\text{{SiLU}}({g:.3f}) = {a:.3f}$, "
                f"$\\text{{up}} = {u:.3f}$, so $\\text{{product}} = {a:.3f} \\times {factor} = {p:.3f}$. "
                f"The FFN adds {p:.3f} times this neuron's column of $W_\\text{{down}}$ to the residual stream.")
    show_chart(figure(along_text, [chart_label(t) for t in labels], acts.product[:, neuron], i, neuron,
                      title=f"Neuron {neuron + 1} along your text (red: token {position})"),
               partial(pd.DataFrame, {"position": np.arange(1, length + 1), "token": labels,
                                      "gate": acts.gate[:, neuron], "up": acts.up[:, neuron],
                                      "product": acts.product[:, neuron]}),
               name=f"neuron-{layer}-{neuron + 1}-along-text", key="along")

    st.markdown(f"##### What excites neuron {neuron + 1} in a small corpus")
    job = corpus_job(layer - 1)
    index = follow(job, what=f"reading of the corpus through layer {layer}")
    if index is not None:
        side = st.segmented_control("Strongest", ["positive", "negative"], default="positive", key="side",
                                    bind="query-params", help="A SwiGLU neuron fires both ways: a negative product "
                                    "writes its W_down column with the opposite sign.") or "positive"
        examples = neuron_examples(index, neuron, 8, negative=side == "negative")
        st.dataframe(pd.DataFrame({"product": [e.value for e in examples],
                                   "before": [in_line(e.before) for e in examples],
                                   "token": [visible(e.token) for e in examples],
                                   "after": [in_line(e.after) for e in examples],
                                   "document": [e.document for e in examples]}).style.map(
                         lambda _: "background-color: rgba(230, 159, 0, 0.3)", subset=["token"]),
                     hide_index=True, width="stretch", column_config={
                         "product": st.column_config.NumberColumn(format="%+.2f", width="small"),
                         "before": st.column_config.TextColumn(alignment="right", width="medium"),
                         "token": st.column_config.TextColumn(alignment="center", width="small"),
                         "after": st.column_config.TextColumn(width="small")})
        st.caption(f"The {index.token_count:,} tokens of {index.documents_read} short documents (assets/"
                   f"neuron_corpus.toml: public-domain excerpts and texts written for this app), each read on its "
                   f"own; the highlighted token is where the neuron's product is most {side}. Over the corpus it is "
                   f"positive on {100 * index.positive_share[neuron]:.0f}% of tokens, mean "
                   f"{index.mean[neuron]:+.3f}.")
        if not index.complete:
            st.button("Read the whole corpus", key="corpus-again", on_click=corpus_job, args=(layer - 1, True))

    effect = written(layer - 1, neuron)
    per_unit = effect.scores / float(acts.final_rms[i])   # the final norm divides this position's residual by its RMS
    up_ids, down_ids = list(effect.promoted), list(effect.suppressed)
    up_texts, down_texts = token_texts(effect.promoted), token_texts(effect.suppressed)
    st.markdown(f"##### What neuron {neuron + 1} writes")
    show_chart(figure(logit_effect_bars, [chart_label(t) for t in up_texts], per_unit[up_ids],
                      [chart_label(t) for t in down_texts], per_unit[down_ids],
                      title=f"Its W_down column read as next-token logits at token {position}"),
               partial(pd.DataFrame, {"token_raised": up_texts, "logit_per_unit_raised": per_unit[up_ids],
                                      "token_lowered": down_texts, "logit_per_unit_lowered": per_unit[down_ids]}),
               name=f"neuron-{layer}-{neuron + 1}-logit-effect", key="effect")
    side_now = ("raises the left-hand tokens and lowers the right-hand ones" if p >= 0 else
                "is negative, so it works the other way round: it raises the right-hand tokens and lowers the "
                "left-hand ones")
    st.caption(f"Column {neuron + 1} of W_down, times the final norm's gain, times the tied output matrix, divided by "
               f"the {acts.final_rms[i]:.1f} that the final norm divides this token's residual by: the direct push on "
               f"each logit per unit of product, ignoring every later layer. Here the product is {p:+.2f}: the neuron "
               f"{side_now}, by up to {abs(p) * float(np.abs(per_unit).max()):.2f} logits directly.")

    st.subheader("Silence neurons and watch the prediction", anchor=False)
    silence_n = st.slider("Neurons to silence: the one in focus, then the most active others", 1, 64, 1,
                          key="silence", bind="query-params",
                          help="Their product is set to 0 at every token of this layer (an ablation). A control "
                               "run silences as many random neurons of the same layer.")
    chosen = [neuron] + [int(n) for n in acts.ranked(i) if int(n) != neuron][:silence_n - 1]
    result = silencing(text, layer - 1, i, tuple(chosen))
    top_id, next_labels = result.ids[0], [chart_label(t) for t in token_texts(result.ids)]
    shift = float(result.silenced[0] - result.intact[0])
    m1, m2, m3 = st.columns(3)
    described_metric(m1, "Change, KL (bits)", bits(result.kl_bits),
                     f"random: {bits(result.control_kl_bits)}",
                     help=f"KL(intact ‖ silenced) of the next-token distribution after this token, in bits: 0 means "
                          f"no change at all. The note gives the same for {len(chosen)} random neuron"
                          f"{'s' if len(chosen) > 1 else ''} of this layer.")
    m2.metric(f"P({escape_markdown(visible(token_texts((top_id,))[0]))})", f"{100 * result.silenced[0]:.2f}%",
              f"{100 * shift:+.1f} pts, was {100 * result.intact[0]:.1f}%", delta_color="off",
              help="The intact model's favourite next token, and how much probability it keeps after silencing.")
    described_metric(m3, "New favourite", visible(token_texts((result.silenced_top_id,))[0]),
                     f"{100 * result.silenced_top_probability:.2f}%",
                     help="The most likely next token after silencing.")
    show_chart(figure(ablation_bars, next_labels, result.intact, result.silenced, result.control,
                      silenced_name=(f"neuron {neuron + 1} silenced" if len(chosen) == 1
                                     else f"{len(chosen)} neurons silenced"),
                      control_name=f"{len(chosen)} random neuron{'s' if len(chosen) > 1 else ''} silenced",
                      title=f"Next token after token {position}: intact vs silenced"),
               partial(pd.DataFrame, {"token": token_texts(result.ids), "token_id": result.ids,
                                      "intact": result.intact, "silenced": result.silenced,
                                      "random_control": result.control}),
               name=f"silence-layer{layer}-{len(chosen)}", key="silenced")

    s = split()
    st.subheader("Where a block's parameters are", anchor=False)
    m1, m2, m3 = st.columns(3)
    described_metric(m1, "FFN share of a block", f"{100 * s.ffn_share_of_layer:.1f}%",
                     f"{s.ffn / 1e6:.2f}M of {s.per_layer / 1e6:.2f}M",
                     help=f"gate, up and down: {s.ffn:,} of the block's {s.per_layer:,} parameters.")
    described_metric(m2, "Attention in a block", f"{100 * s.attention / s.per_layer:.1f}%", f"{s.attention / 1e6:.2f}M",
                     help=f"q, k, v and o: {s.attention:,} parameters. The two RMSNorms add {s.norms:,}.")
    described_metric(m3, f"All {s.layers} FFNs", f"{100 * s.ffn_share_of_model:.1f}%",
                     f"of the model's {s.total / 1e6:.1f}M",
                     help=f"{s.layers * s.ffn:,} of {s.total:,} parameters. The rest: attention "
                          f"({s.layers * s.attention:,}), the token embedding ({s.embedding:,}) and the norms.")
    show_chart(figure(parameter_bars, list(s.layer_parts), title="One block: attention (blue), FFN (orange), norms"),
               pd.DataFrame(s.layer_parts, columns=["tensor", "parameters"]), name="block-parameters", key="params")
    st.caption(f"Counted from the model's own tensors. gate and up are {card.ffn_dim:,} × {card.d_model} each, down "
               f"is {card.d_model} × {card.ffn_dim:,}; the keys and values are smaller than the queries because "
               f"{card.heads} query heads share {card.kv_heads} key/value heads.")
