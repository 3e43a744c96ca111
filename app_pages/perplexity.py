from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.loss import bucket_legend, perplexity_bars, stride_curve
from charts.tokens import token_chips
from engine.decoding.loss import RANK_BUCKETS, rank_bucket, shuffle_words, sweep_strides
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty, whole_number_input
from ui.jobs import follow
from ui.loss import WINDOWED_MAX_TOKENS, ids_of, loss_chips, losses, pieces, stride_sweep_job
from ui.layout import metric_row
from ui.text import described_metric

TEXT_KEY = "text"
DEFAULT_TEXT = ("Once upon a time, a little girl lived with her mother in a small house at the edge of a forest. "
                "Every morning she walked to the village to buy bread, and every evening she came home before dark.")
# Reference texts for the comparison: inputs to measure, not results.
SAMPLES = {"English prose": "The museum opens at nine in the morning and closes at five in the afternoon. "
                            "Tickets can be bought at the entrance or online.",
           "Python code": "def mean(values):\n    total = sum(values)\n    return total / len(values)\n",
           "French": "Le musée ouvre à neuf heures du matin et ferme à cinq heures de l'après-midi. "
                     "On peut acheter les billets à l'entrée ou en ligne.",
           "Random characters": "qz7 vj@k ~pl0x wq9r ;;bn zzq 4hh# ukx0 mpo& yy1"}
WINDOWS = [8, 16, 32, 64]

with concept_page("perplexity"):
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Your text", height=90)
    stop_if_empty(text, "Type a few sentences above to measure how well the model predicts them.")
    if len(ids_of(text)) < 2:
        st.info("This text is a single token: there is nothing after it to predict. Add a few words.",
                icon=":material/edit:")
        st.stop()
    result = losses(text)
    buckets = [rank_bucket(int(r)) for r in result.ranks]

    c1, c2, c3, c4 = metric_row(4)
    described_metric(c1, "Perplexity", f"{result.perplexity:,.2f}", f"= exp({result.mean_nll:.3f} nats mean loss)",
                     help="exp of the mean per-token cross-entropy: the model was, on average, as unsure as if "
                          "it were choosing among this many equally likely tokens.")
    described_metric(c2, "Tokens predicted", f"{result.nll.size:,}", "every token after the first")
    top10 = sum(b == "top 10" for b in buckets) / len(buckets)
    described_metric(c3, "Actual token in the top 10", f"{100 * top10:.0f}%", "of the predicted tokens",
                     help="How often the token that came was among the model's 10 favourites (GLTR's green).")
    described_metric(c4, "Uniform-guess perplexity", f"{result.vocab_size:,}",
                     "the vocabulary size: every token equally likely")

    st.subheader("Where the model was surprised", anchor=False)
    show_chart(figure(token_chips, [("", loss_chips(result, colour_by="rank"))], columns=64, legend=bucket_legend(),
                      title="Each token coloured by the rank the model gave it; hover for its favourites"),
               partial(pd.DataFrame, {"position": range(1, len(result.ids)), "token": pieces(result.ids)[1:],
                                      "rank": result.ranks, "bucket": buckets, "surprisal_bits": result.bits}),
               name="rank-buckets", key="chips")
    counts = {name: buckets.count(name) for _, name in RANK_BUCKETS}
    st.caption(" · ".join(f"{name}: {n}" for name, n in counts.items()) + ". Text a model wrote itself tends to be "
               "almost all top 10; human text has more surprises. GLTR used this to spot machine-written text.")

    st.subheader("The same model, different texts", anchor=False)
    seed = whole_number_input("Shuffle seed", 0, 9999, 0, "seed", help="Which random order the shuffled words "
                              "take. The words are the same; only their order changes.")
    texts = {"Your text": text, "Your words, shuffled": shuffle_words(text, seed)} | SAMPLES
    measured = {name: losses(t) for name, t in texts.items() if len(ids_of(t)) >= 2}
    names = list(measured)
    show_chart(figure(perplexity_bars, names, [measured[n].perplexity for n in names],
                      [measured[n].nll.size for n in names], title="Perplexity of each text under SmolLM2-135M"),
               partial(pd.DataFrame, {"text": names, "perplexity": [measured[n].perplexity for n in names],
                                      "mean_loss_nats": [measured[n].mean_nll for n in names],
                                      "tokens_predicted": [measured[n].nll.size for n in names],
                                      "content": [texts[n] for n in names]}),
               name="perplexity-by-text", key="compare")
    if "Your words, shuffled" in measured:
        ratio = measured["Your words, shuffled"].perplexity / result.perplexity
        st.markdown(f"Shuffling your words multiplies the perplexity by **{ratio:,.1f}**: the same words, but "
                    "without the order that grammar and meaning give them, are much harder to predict.")
    st.caption("Perplexity is only comparable between texts scored by the same tokenizer: a text cut into more, "
               "shorter tokens (French, code, random characters) has more easy predictions inside words.")

    st.subheader("Sliding windows: how much context each token gets", anchor=False)
    left, right = st.columns(2)
    window = left.select_slider("Window (tokens the model sees at once)", WINDOWS, value=16, key="window",
                                bind="query-params", help="A model with a context of this many tokens.")
    strides = sweep_strides(window)
    if "stride" in st.session_state and st.session_state["stride"] not in strides:
        del st.session_state["stride"]   # kept from another window, whose strides differ
    stride = right.select_slider("Stride (tokens the window moves each pass)", strides,
                                 value=strides[len(strides) // 2], key="stride", bind="query-params",
                                 help="Small strides overlap the windows, so each token is predicted with more "
                                      "context, at the price of more passes.")
    if len(ids_of(text)) > WINDOWED_MAX_TOKENS:
        st.caption(f":material/content_cut: The sweep scores the first {WINDOWED_MAX_TOKENS} tokens of your text.")
    sweep = follow(stride_sweep_job(text, window), what="stride sweep")
    if sweep:
        chosen = next((r for r in sweep if r.stride == stride), sweep[0])
        full = losses(text).perplexity if len(ids_of(text)) <= WINDOWED_MAX_TOKENS else float(
            np.exp(result.nll[:WINDOWED_MAX_TOKENS - 1].mean()))
        m1, m2, m3 = metric_row(3)
        described_metric(m1, f"Perplexity, stride {chosen.stride}", f"{chosen.perplexity:,.2f}",
                         f"whole text as context: {full:,.2f}")
        described_metric(m2, "Forward passes", f"{chosen.passes:,}", f"windows of {window} tokens")
        described_metric(m3, "Mean context per token", f"{chosen.context.mean():.1f} tokens",
                         f"at least {int(chosen.context.min())}, at most {int(chosen.context.max())}")
        show_chart(figure(stride_curve, [r.stride for r in sweep], [r.perplexity for r in sweep],
                          [r.passes for r in sweep], chosen.stride, full,
                          title=f"Perplexity against stride, window of {window} tokens"),
                   partial(pd.DataFrame, {"stride": [r.stride for r in sweep],
                                          "perplexity": [r.perplexity for r in sweep],
                                          "passes": [r.passes for r in sweep],
                                          "mean_context": [float(r.context.mean()) for r in sweep]}),
                   name=f"stride-sweep-w{window}", key="strides")
        st.caption(f"Every pass runs the model on at most {window} tokens and scores only tokens no earlier pass "
                   "scored, as in the Hugging Face perplexity guide. Less context means higher perplexity: the "
                   f"number a paper reports depends on the window and stride it used.")
