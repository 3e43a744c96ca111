import math
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.loss import FIRST_TOKEN_FILL, loss_bars, loss_legend
from charts.tokens import token_chips
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import ranged_slider, stop_if_empty
from ui.loss import ids_of, loss_chips, losses, own_loss, pieces
from ui.layout import metric_row
from ui.text import described_metric, escape_markdown, ordinal, token_markdown

TEXT_KEY = "text"
DEFAULT_TEXT = "The Eiffel Tower is in Paris. It was finished in 1889 and is one of the most visited monuments."
PRESETS = {"Fact": DEFAULT_TEXT,
           "Code": "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
           "Repeated": "one two three four, one two three four, one two three four, one two three four",
           "Nonsense": "Purple spoons negotiate quietly under the algebra of forgotten trains."}
UNITS = {"nats": 1.0, "bits": 1 / math.log(2)}


def use_text(text: str) -> None:
    st.session_state[TEXT_KEY] = text


with concept_page("cross-entropy"):
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Your text", height=90)
    with st.container(horizontal=True, gap="small"):
        for name, preset in PRESETS.items():
            st.button(name, key=f"preset-{name.lower()}", on_click=use_text, args=(preset,), width="content")
    stop_if_empty(text, "Type a sentence above (or pick a preset) to see how surprised the model is by each "
                        "of its tokens.")
    if len(ids_of(text)) < 2:
        st.info("This text is a single token: there is nothing after it to predict. Add a few words.",
                icon=":material/edit:")
        st.stop()
    result = losses(text)

    unit = st.segmented_control("Unit", list(UNITS), default="nats", key="unit", bind="query-params",
                                help="nats use the natural log (what training code computes); bits use log "
                                     "base 2. 1 nat = 1.443 bits.") or "nats"
    scale = UNITS[unit]
    n_bytes = len(text.encode("utf-8"))
    total_nats = float(result.nll.sum())
    own = own_loss(text)

    c1, c2, c3, c4 = metric_row(4)
    described_metric(c1, f"Cross-entropy ({unit}/token)", f"{result.mean_nll * scale:.3f}",
                     f"over {result.nll.size} predicted tokens",
                     help="The mean of -ln p(actual next token) over every token after the first: the number "
                          "a training run lowers.")
    described_metric(c2, f"Uniform guess ({unit}/token)", f"{result.uniform_nll * scale:.2f}",
                     f"ln {result.vocab_size:,}: every token equally likely",
                     help="A model that knew nothing would give each of the vocabulary's tokens the same "
                          "probability, 1/V, at every step.")
    described_metric(c3, f"Total surprise ({unit})", f"{total_nats * scale:,.1f}",
                     f"{total_nats / math.log(2):,.0f} bits for {len(text):,} characters")
    described_metric(c4, "Bits per byte", f"{total_nats / math.log(2) / n_bytes:.3f}",
                     f"{n_bytes:,} bytes of UTF-8",
                     help="Total bits over the text's bytes. Unlike loss per token, it does not depend on "
                          "how a tokenizer cuts the text, so models with different tokenizers can be compared.")
    if abs(own - result.mean_nll) < 1e-4:
        st.success(f"Checked: the mean of these {result.nll.size} per-token losses, {result.mean_nll:.4f} nats, "
                   f"equals the loss transformers itself computes for this text with the text as its labels "
                   f"({own:.4f} nats): the training objective, token by token.", icon=":material/check_circle:")
    else:
        st.warning(f"The per-token mean ({result.mean_nll:.4f}) and the model's own loss ({own:.4f}) differ.")

    st.subheader("How surprised the model is by each token", anchor=False)
    show_chart(figure(token_chips, [("", loss_chips(result))], columns=64,
                      legend=[("first token: nothing predicts it", FIRST_TOKEN_FILL)] + loss_legend(),
                      title="Each token coloured by its loss in bits; hover for p, rank and the model's favourites"),
               partial(pd.DataFrame, {"position": range(1, len(result.ids)),
                                      "token": pieces(result.ids)[1:], "probability": result.probs,
                                      "loss_nats": result.nll, "loss_bits": result.bits, "rank": result.ranks}),
               name="per-token-loss", key="chips")

    texts = pieces(result.ids)
    labels = [visible(t) for t in texts[1:]]
    position = ranged_slider("Token to work through", 1, result.nll.size, int(np.argmax(result.nll)) + 1,
                             "pos", help="Which predicted token the formula below is filled in for (1 = the "
                                         "second token of the text, the first one predicted). The default is "
                                         "the most surprising one.")
    t = position - 1
    show_chart(figure(loss_bars, labels, (result.nll * scale).tolist(), unit, result.uniform_nll * scale,
                      result.mean_nll * scale, t, title=f"Loss of every predicted token ({unit})"),
               partial(pd.DataFrame, {"position": range(1, len(labels) + 1), "token": labels,
                                      f"loss_{unit}": result.nll * scale}),
               name=f"loss-bars-{unit}", key="bars")

    context = escape_markdown(visible("".join(texts[max(0, t - 7):t + 1])))
    z, log_z = float(result.logit[t]), float(result.log_partition[t])
    st.markdown(f"After *…{context}* the actual next token is {token_markdown(texts[t + 1])} "
                f"(id {result.ids[t + 1]}), ranked {ordinal(int(result.ranks[t]))} of {result.vocab_size:,}. "
                f"Its logit is $z_y = {z:.3f}$ and the log of the softmax's denominator over all "
                f"{result.vocab_size:,} logits is $\\ln\\sum_j e^{{z_j}} = {log_z:.3f}$, so:")
    st.latex(rf"\mathcal{{L}} = -\ln p(y) = \ln\sum_j e^{{z_j}} - z_y = {log_z:.3f} - {z:.3f} = "
             rf"{result.nll[t]:.3f}\ \text{{nats}} = {result.bits[t]:.3f}\ \text{{bits}},\quad "
             rf"p(y) = e^{{-{result.nll[t]:.3f}}} = {100 * result.probs[t]:.3g}\%")
    top_texts = pieces(tuple(int(i) for i in result.top_ids[t]))
    st.caption("The model's own favourites at this position: " + " · ".join(
        f"{escape_markdown(visible(s))} {100 * p:.1f}%" for s, p in zip(top_texts, result.top_probs[t])))

    st.subheader("Why loss per token does not compare across tokenizers", anchor=False)
    per_char = total_nats / math.log(2) / max(1, len(text))
    st.markdown(f"The text's total surprise is {total_nats / math.log(2):,.1f} bits. SmolLM2 spends "
                f"{len(result.ids):,} tokens on it, so its mean is {result.mean_nll / math.log(2):.2f} bits per "
                f"token ({per_char:.2f} bits per character). A tokenizer that cut the same text into half as many "
                f"tokens would carry the same information in half as many predictions: its loss per token would "
                f"look about twice as high while predicting the text no worse. That is why benchmarks that "
                f"compare models with different vocabularies report bits per byte (here "
                f"{total_nats / math.log(2) / n_bytes:.3f}) or per character.")
