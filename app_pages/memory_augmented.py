from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.knn_lm import budget_bars, perplexity_vs_lambda, token_gains
from engine.tokens.offsets import visible
from engine.using.knn_lm import K_MAX, KEY_KINDS, KEY_NAMES, knn_distribution, knn_target_prob, mixed_logprob, \
    perplexity_curve, perplexity_of
from engine.using.memory_budget import BUNDLED_CHAT, projected_capacity
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import accept_url_alias, ranged_slider
from ui.knn_lm import chat_budget, decoded, memory_and_neighbours, text_pass, token_texts
from ui.layout import metric_row
from ui.rag import probability_text
from ui.text import escape_markdown, large_number, ratio_delta

DEFAULT_DOC = (
    "The village of Tarrowmere sits on the eastern shore of Lake Idrin. Its lighthouse, the Kessin Light, was "
    "built in 1871 by the engineer Odile Varsk and still flashes green every nine seconds. Each autumn the "
    "village holds the Lantern Regatta, in which boats painted with copper stripes race to Brannoch Island "
    "and back. The regatta's trophy is a silver heron called the Varsk Cup. Tarrowmere is famous for its "
    "smoked eel pie and for a blue cheese named Idrin Vein, aged in caves beneath the lighthouse.")
QUERIES = {
    "related": ("Odile Varsk built the Kessin Light in 1871, and it flashes green every nine seconds. The winners "
                "of the Lantern Regatta, who race to Brannoch Island, receive the Varsk Cup. Visitors to "
                "Tarrowmere should taste the smoked eel pie and the Idrin Vein cheese."),
    "unrelated": ("The stock market fell sharply on Monday as investors worried about rising interest rates and "
                  "weak factory data from Europe. Bond yields climbed to their highest level in a year."),
}
TEMPERATURES = (0.3, 1, 3, 10, 30, 100, 300, 1000)
LAMBDAS = np.round(np.arange(0, 1.0001, 0.05), 2)


def use_query(kind: str) -> None:
    st.session_state["query"] = QUERIES[kind]


def context_of(texts: tuple[str, ...], row: int, width: int = 8) -> str:
    """Memory row `row`: the document tokens before its value, then the value in brackets."""
    left = "".join(texts[max(0, row - width + 1):row + 1]).replace("\n", " ")
    return ("…" if row >= width else "") + left + "⟦" + texts[row + 1] + "⟧"


with concept_page("memory-augmented"):
    st.markdown("Paste a **document**: one forward pass of SmolLM2 turns it into a memory of (context vector, "
                "next token) pairs. The model then reads a **query text** on its own, without the document in "
                "its context window, and at every token asks the memory: which stored contexts look like this "
                "one, and what came next there?")
    doc = prompt_input("doc", DEFAULT_DOC, "Document (the memory)", height=150, max_tokens=384)
    query = prompt_input("query", QUERIES["related"], "Query text (scored with and without the memory)",
                         height=100, max_tokens=128)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/search: **Query presets:**", width="content")
        st.button("About the document", key="preset-related", on_click=use_query, args=("related",), width="content")
        st.button("Unrelated to it", key="preset-unrelated", on_click=use_query, args=("unrelated",), width="content")

    if len(token_texts(doc)) < 2 or len(token_texts(query)) < 2:
        st.info("Type a document of a few sentences (the memory) and a query text of at least two tokens; the "
                "defaults describe a made-up lake village the model cannot know.", icon=":material/edit:")
        st.stop()
    doc_pass, query_pass = text_pass(doc), text_pass(query)

    (c1, c2), (c3, c4) = st.columns(2), st.columns(2)
    lam = c1.slider("lambda (memory weight)", 0.0, 1.0, 0.25, 0.05, key="lam", bind="query-params",
                    help="p = lambda · p_kNN + (1 − lambda) · p_LM. 0 is the model alone, 1 the memory alone. The best "
                         "value depends on how well the memory covers the text: the curve below measures it.")
    k = c2.slider("k (neighbours)", 1, K_MAX, 8, key="k", bind="query-params",
                  help="How many nearest memory entries vote at each query token.")
    temperature = c3.select_slider("Temperature", TEMPERATURES, value=100, key="temp", bind="query-params",
                                   help="Weights are softmax(−distance / temperature). Small: the nearest entry "
                                        "takes almost all the weight; large: the k neighbours vote almost equally.")
    accept_url_alias("key", dict(KEY_NAMES))   # ?key=ffn_input as well as the option's full name
    key_name = c4.selectbox("Key vector", list(KEY_NAMES.values()), key="key", bind="query-params",
                            help="Which hidden state of the one pass is the key (the query uses the same). LM head "
                                 "input: the final RMSNorm's output, the vector the logits are computed from. Last "
                                 "FFN input: what layer 30's feed-forward block reads (after its RMSNorm), the key "
                                 "Khandelwal et al. used.")
    temperature = float(temperature if temperature in TEMPERATURES else 100)
    kind = next((kind for kind, name in KEY_NAMES.items() if name == key_name), KEY_KINDS[0])

    memory, neighbours = memory_and_neighbours(doc, query, kind)
    targets = np.asarray(query_pass.ids[1:])
    p_knn = knn_target_prob(memory, neighbours, targets, k, temperature)
    lm_logprob = query_pass.target_logprob
    mixed = mixed_logprob(lm_logprob, p_knn, lam)
    own, ppl = perplexity_of(lm_logprob), perplexity_of(mixed)
    curve = perplexity_curve(lm_logprob, p_knn, LAMBDAS)
    best = int(np.nanargmin(np.where(np.isfinite(curve), curve, np.nan)))

    m = metric_row(4)
    m[0].metric("Model alone (lambda 0)", large_number(own),
                help=f"Perplexity of the {targets.size} predicted query tokens from SmolLM2's own distribution.")
    m[1].metric(f"kNN-LM at lambda {lam:.2f}", large_number(ppl),
                ("the model itself" if lam == 0 else ratio_delta(ppl, own) if np.isfinite(ppl)
                 else "a token got probability 0"), delta_color="off" if lam == 0 else "inverse",
                delta_arrow="off" if lam == 0 else "auto",
                help="The same tokens scored with the mixed distribution. Lower is better.")
    m[2].metric("Best lambda on the curve", f"{LAMBDAS[best]:.2f}", f"perplexity {large_number(curve[best])}",
                delta_color="off", delta_arrow="off", help="The lowest point of the measured curve below (steps of 0.05).")
    m[3].metric("Memory entries", f"{memory.size:,}",
                help=f"One per document token that has a next token; keys are {memory.keys.shape[1]} numbers "
                     "each, from the single forward pass over the document.")

    show_chart(
        figure(perplexity_vs_lambda, LAMBDAS, curve, lam, ppl,
               title=f"Query perplexity against lambda (k = {k}, T = {temperature:g}), each point measured"),
        partial(pd.DataFrame, {"lambda": LAMBDAS, "perplexity": curve}), name="knn-lm-perplexity-vs-lambda",
        key="curve")
    st.caption(f"Typical distance from a query token to its nearest memory entry (median): "
               f"{np.median(neighbours.distances[:, 0]):,.1f} (squared Euclidean). A temperature near it spreads "
               "the weight over several close neighbours; far below it, the single nearest one decides. "
               "Lambda 1 leaves only the memory, which gives probability 0 to any token it never stored: "
               "then the perplexity is infinite and the point is left off the line.")

    st.subheader("Which tokens the memory helped", anchor=False)
    st.caption("Each bar is one token of the query that the model had to predict: log₂ of its mixed probability "
               "over the model's own. Pick a token to see the memory entries it retrieved and where they sit in "
               "the document." + (" At lambda 0 the memory is switched off, so every bar is 0." if lam == 0 else ""))
    q_texts = token_texts(query)[1:]
    gains = (mixed - lm_logprob) / np.log(2)
    default_pos = int(np.argmax(gains)) + 1
    pos = ranged_slider("Query token to inspect", 1, targets.size, default_pos, "pos",
                        help="The token the model had to predict; the default is the one the memory helped most.")
    i = pos - 1
    show_chart(
        figure(token_gains, [visible(t) for t in q_texts], gains, i,
               title=f"Bits saved per query token at lambda {lam:.2f} (green: helped, red: cost)"),
        partial(pd.DataFrame, {"position": range(1, targets.size + 1), "token": q_texts,
                               "p_model": np.exp(lm_logprob), "p_knn": p_knn, "p_mixed": np.exp(mixed),
                               "bits_saved": gains}), name="knn-lm-token-gains", key="gains")
    m = metric_row(4)
    m[0].metric("Token to predict", visible(q_texts[i]),
                help="After the query text up to here: " + escape_markdown(token_texts(query)[0] +
                                                                            "".join(q_texts[:i])))
    m[1].metric("Model's probability", probability_text(float(np.exp(lm_logprob[i]))))
    m[2].metric("Memory's probability", probability_text(float(p_knn[i])), help="p_kNN: the weight of the neighbours whose "
                                                                "next token is this one.")
    m[3].metric("Mixed probability", probability_text(float(np.exp(mixed[i]))), f"{gains[i]:+.2f} bits", delta_color="normal")
    doc_texts = token_texts(doc)
    rows = neighbours.rows[i, :k]
    weights = np.exp(-(neighbours.distances[i, :k] - neighbours.distances[i, 0]) / temperature)
    weights /= weights.sum()
    st.dataframe(pd.DataFrame({
        "rank": range(1, len(rows) + 1), "distance": np.round(neighbours.distances[i, :k], 2),
        "weight": np.round(weights, 4),
        "next token (value)": [visible(doc_texts[r + 1]) for r in rows],
        "where it sits in the document (value in ⟦ ⟧)": [context_of(doc_texts, int(r)) for r in rows]}),
        hide_index=True, key="neighbours-table")
    top_model = decoded(tuple(int(t) for t in query_pass.top_ids[i]))
    knn_top = knn_distribution(memory, neighbours, i, k, temperature)
    top_memory = decoded(tuple(list(knn_top)[:5]))
    st.caption("The model's own top guesses here: " + ", ".join(
        f"“{escape_markdown(visible(s))}” ({p:.2f})" for s, p in zip(top_model, query_pass.top_probs[i])) +
        ". The memory's: " + ", ".join(f"“{escape_markdown(visible(s))}” ({p:.2f})"
                                       for s, p in zip(top_memory, knn_top.values())) + ".")

    st.subheader("Summarised memory: the context budget of a chat", anchor=False)
    n_messages = len(BUNDLED_CHAT) - 1
    keep = st.slider("Messages kept verbatim (the rest are summarised)", 1, n_messages, 4, key="keep",
                     bind="query-params", help=f"The bundled chat has a system prompt and {n_messages} messages. "
                                               "The oldest ones are replaced by a summary in a second system turn.")
    budget = chat_budget(int(keep))
    full, short = budget.full, budget.summarised
    fit_full, fit_short = projected_capacity(budget)
    m = metric_row(4)
    m[0].metric("Whole chat, verbatim", f"{full.total:,} tokens", f"{100 * full.total / full.window:.1f}% of the "
                "window", delta_color="off", delta_arrow="off", help="The chat rendered with SmolLM2's chat template and counted "
                                                  "with its tokenizer: special tokens and role headers included.")
    m[1].metric("With summarised memory", f"{short.total:,} tokens", f"−{budget.saved:,} tokens "
                f"({100 * budget.saved / full.total:.0f}% saved)", delta_color="off", delta_arrow="off")
    m[2].metric("Context window", f"{full.window:,} tokens", "read from the model's config", delta_color="off",
                delta_arrow="off",
                help="max_position_embeddings of SmolLM2-135M-Instruct.")
    m[3].metric("Messages that fit", f"{fit_full:,} → {fit_short:,}",
                f"{budget.per_message:.0f} → {budget.per_summarised:.0f} tokens each", delta_color="off",
                delta_arrow="off", help="How many messages of this chat's measured average size the window holds "
                                        "kept verbatim, against summarised beyond the last ones kept. An "
                                        "extrapolation from these averages, not a longer chat.")
    rows = ["Whole chat", "Summarised memory"]
    segments = [[(s.label, s.tokens) for s in full.segments], [(s.label, s.tokens) for s in short.segments]]
    show_chart(
        figure(budget_bars, rows, segments, full.window,
               title=f"The {full.window:,}-token window: {budget.kept_messages} messages kept, "
                     f"{budget.summarised_messages} summarised"),
        partial(pd.DataFrame, [{"layout": r, "part": label, "tokens": n} for r, row in zip(rows, segments)
                               for label, n in row]), name="chat-context-budget", key="budget")
    if budget.summarised_messages:
        with st.expander(f"The summary that replaces {budget.summarised_messages} messages "
                         f"({short.segments[1].tokens} tokens instead of {full.segments[1].tokens})"):
            st.text(budget.summary_text)
    st.caption("The summary is extractive: the first sentence of each older message (a sentence of at least four "
               "words, cut to fourteen), written by code, not by the model. It is lossy: details after the first "
               "sentence are gone from the window, so a MemGPT-style system keeps the full text outside the "
               "window and lets the model search it when a question needs it.")
