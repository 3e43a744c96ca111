from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.rag import chunk_lengths, gold_positions, reference_tokens, retrieval_scores
from engine.retrieval.chunks import CHUNK_SIZES, DEFAULT_CHUNK_SIZE
from engine.retrieval.exact import exact_search
from engine.retrieval.rag import gold_index, rag_prompt
from engine.tokens.text_limits import clean_text
from engine.tokens.offsets import decode_each, visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.rag import probability_text, rag_job, ratio_text
from ui.retrieval import chunk_index, chunks_for, corpus, query_vector
from ui.text import escape_markdown, ordinal

PRESETS = {  # questions whose answers sit in this handbook's own pages, each with its reference answer
    "OpenAI's temperature range": ("What temperature range does OpenAI's API accept?", "0 to 2"),
    "KV cache per token": ("How much memory does SmolLM2's KV cache take per token in float32?", "45 KiB"),
    "MiniLM's vector size": ("How many dimensions does an all-MiniLM-L6-v2 sentence vector have?", "384"),
    "llama.cpp's temperature": ("What temperature does llama.cpp sample at by default?", "0.8"),
}
DEFAULT_QUESTION, DEFAULT_REFERENCE = next(iter(PRESETS.values()))
SHOWN = 10   # chunks drawn in the retrieval chart


def use_preset(name: str) -> None:
    st.session_state["question"], st.session_state["ref"] = PRESETS[name]


def show_retrieval(index, question: str, reference: str, k: int):
    """Score every chunk against the question, draw the best, show the k taken; return what was taken."""
    hits = exact_search(index.vectors, query_vector(question), len(index.chunks))
    ranking, retrieved = hits.ids, hits.ids[:k]
    gold = gold_index(index.chunks, ranking, reference) if reference else None
    gold_rank = ranking.index(gold) + 1 if gold is not None else None
    m = metric_row(3)
    m[0].metric("Best score", f"{hits.scores[0]:.3f}", help="Cosine between your question's and the chunk's vectors.")
    m[1].metric(f"Score of chunk {k}", f"{hits.scores[k - 1]:.3f}", help="The last one that goes into the prompt.")
    m[2].metric("Chunk holding the reference",
                "none" if gold_rank is None else f"{ordinal(gold_rank)} of {len(ranking)}",
                help="The best-ranked chunk whose text contains your reference answer (case ignored).")
    shown = ranking[:max(SHOWN, k)]
    labels = [f"{r}. {index.chunks[i].title} · {index.chunks[i].section}" for r, i in enumerate(shown, 1)]
    show_chart(figure(retrieval_scores, labels, list(hits.scores[:len(shown)]), k,
                      shown.index(gold) if gold in shown else None,
                      title=f"Your question against {len(ranking):,} chunks: the best {len(shown)}"),
               partial(pd.DataFrame, {"rank": range(1, len(ranking) + 1), "chunk": ranking, "score": hits.scores,
                                      "page": [index.chunks[i].slug for i in ranking],
                                      "section": [index.chunks[i].section for i in ranking]}),
               name="retrieval-scores", key="scores")
    if gold is not None and gold_rank > k:
        st.warning(f"The chunk that holds the answer ranks {ordinal(gold_rank)}, outside the top {k}: the model "
                   "will not see it. A retrieval miss, not a model error.", icon=":material/search_off:")
    for r, i in enumerate(retrieved, 1):
        chunk = index.chunks[i]
        with st.container(border=True):
            st.caption(f"[{r}] {escape_markdown(chunk.title)} · {chunk.section} · cosine {hits.scores[r - 1]:.3f}"
                       + (" · ★ holds the reference answer" if i == gold else ""))
            st.markdown(escape_markdown(chunk.text))

    return ranking, retrieved, gold


def show_answers(run, index, question: str, reference: str, k: int, retrieved, gold) -> None:
    """The two greedy answers, the reference's probability both ways, and the exact prompt."""
    left, right = st.columns(2)
    sides = ((left, "Without retrieval", run.without), (right, f"With the {k} chunks", run.with_context))
    for column, name, cond in sides:
        with column.container(border=True):
            st.markdown(f"**{name}** · prompt of {cond.prompt_tokens:,} tokens")
            st.markdown(escape_markdown(cond.answer) if cond.answer else "*(stopped before answering)*")
            if cond.answer is not None:
                st.caption(f"{cond.answer_tokens} tokens, greedy" + (", ended its turn" if cond.stopped_at_eos
                                                                     else ", cut at the length limit"))
    if not run.complete:
        st.warning("Stopped early: what was measured before the stop is shown.", icon=":material/stop_circle:")
    if reference and run.reference_ids:
        without, with_ = run.without.reference_logprob, run.with_context.reference_logprob
        n_ref = len(run.reference_ids)
        m = metric_row(4)
        m[0].metric("p(reference), without", probability_text(np.exp(without)), f"ln p = {without:.2f}",
                    delta_color="off", delta_arrow="off",
                    help="Probability that the reply starts with exactly your reference, token by token.")
        m[1].metric("p(reference), with the chunks", probability_text(np.exp(with_)), f"ln p = {with_:.2f}",
                    delta_color="off", delta_arrow="off")
        m[2].metric("Retrieval makes it", ratio_text(np.exp(with_ - without)) + " as likely",
                    help="p with the chunks divided by p without.")
        m[3].metric("Per token (geometric mean)", f"{np.exp(without / n_ref):.3f} → {np.exp(with_ / n_ref):.3f}",
                    help=f"The {n_ref} tokens' probabilities, averaged on a log scale.")
        pieces = [visible(t) for t in decode_each(lm(), list(run.reference_ids))]
        p_without, p_with = np.exp(run.without.reference_logprobs), np.exp(run.with_context.reference_logprobs)
        show_chart(figure(reference_tokens, pieces, p_without.tolist(), p_with.tolist(),
                          title="Each token of the reference answer, teacher-forced after the prompt"),
                   partial(pd.DataFrame, {"token": pieces, "id": run.reference_ids, "p_without": p_without,
                                          "p_with_chunks": p_with}),
                   name="reference-probability", key="reference")
    said = {name: bool(reference) and cond.answer is not None and reference.lower() in cond.answer.lower()
            for name, cond in (("without", run.without), ("with", run.with_context))}
    if reference and run.with_context.answer is not None:
        verdict = {True: "contains", False: "does not contain"}
        note = (" The chunk holding it was in the prompt: the model read the answer and did not repeat it, which a "
                "135M model often fails to do." if gold in retrieved and not said["with"] else
                " The chunk holding it was not among the chunks retrieved." if gold not in retrieved else "")
        st.markdown(f"**Measured:** the answer without the chunks {verdict[said['without']]} "
                    f"“{escape_markdown(reference)}”; the answer with them {verdict[said['with']]} it.{note}")
    with st.expander("The exact prompt the model read, with the chunks"):
        st.code(rag_prompt(lm(), question, [index.chunks[i] for i in retrieved]), language=None, wrap_lines=True)


def show_positions(run) -> None:
    """The reference's probability as the chunk holding it moves through the context."""
    if run.position_logprobs:
        best = int(np.argmax(run.position_logprobs))
        m = metric_row(3)
        m[0].metric("Best position", f"{best + 1} of {len(run.position_logprobs)}")
        m[1].metric("Spread", f"{max(run.position_logprobs) - min(run.position_logprobs):.2f} nats",
                    help="ln p at the best position minus ln p at the worst: e to this power is the ratio.")
        low, high = min(run.position_tokens), max(run.position_tokens)
        m[2].metric("Prompt length", f"{low:,} tokens" if low == high else f"{low:,}–{high:,} tokens",
                    help="The same chunks in another order: the length barely changes.")
        show_chart(figure(gold_positions, list(run.position_logprobs), run.without.reference_logprob,
                          title="The chunk holding the answer at each position of the context"),
                   partial(pd.DataFrame, {"gold_position": range(1, len(run.position_logprobs) + 1),
                                          "ln_p_reference": run.position_logprobs,
                                          "times_as_likely_as_without": np.exp(np.array(run.position_logprobs)
                                                                               - run.without.reference_logprob),
                                          "prompt_tokens": run.position_tokens}),
                   name="gold-position", key="positions")
        st.caption("The other chunks keep their retrieved order around it. Liu et al. found large models do best "
                   "with the answer at the start or the end of a long context; with a few hundred tokens and "
                   "135M parameters, read the spread above before reading a shape into it.")
    else:
        st.info("Give a reference answer that one of the chunks contains, and k of at least 2, to move that chunk "
                "through the context and measure its effect.", icon=":material/swap_vert:")


with concept_page("rag"):
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/quiz: **Ask about:**", width=130)
        for i, name in enumerate(PRESETS):
            st.button(name, key=f"preset-{i}", on_click=use_preset, args=(name,), width="content")
    question = prompt_input("question", DEFAULT_QUESTION, "Your question about this handbook", max_chars=300,
                            max_tokens=80, help="Retrieval searches the handbook's own pages for it. Up to 80 tokens.")
    ref_kwargs = {} if "ref" in st.session_state else {"value": DEFAULT_REFERENCE}
    reference = clean_text(st.text_input(
        "Reference answer (optional)", key="ref", bind="query-params", max_chars=60, **ref_kwargs,
        help="A short answer as it appears in the handbook. Its probability is measured with and without "
             "retrieval, and the chunk that contains it is marked ★."))[0].strip()[:60]
    c1, c2, c3 = st.columns(3)
    k = c1.slider("k: chunks put in the prompt", 1, 6, 3, key="k", bind="query-params",
                  help="The k chunks most similar to your question are pasted above it.")
    size = c2.select_slider("Chunk size (words)", CHUNK_SIZES, value=DEFAULT_CHUNK_SIZE, key="chunk",
                            bind="query-params", help="Longest chunk in words; each size is its own index.")
    max_new = c3.slider("Answer length (tokens)", 8, 64, 32, key="len", bind="query-params",
                        help="Greedy decoding stops here or at the model's end of turn.")
    stop_if_empty(question, "Type a question about anything this handbook explains, or pick one above.")

    files, fingerprint = corpus()
    chunks = chunks_for(size, fingerprint)
    st.subheader("1. The handbook, cut into chunks", anchor="chunks")
    words = [c.words for c in chunks]
    m = metric_row(4)
    m[0].metric("Concept pages", f"{len(files)}", help="Every concept file of this handbook, read now.")
    m[1].metric("Words", f"{sum(words):,}", help="Summary and the three prose sections; the quizzes are left out.")
    m[2].metric(f"Chunks of ≤ {size} words", f"{len(chunks):,}")
    m[3].metric("Mean chunk", f"{np.mean(words):.0f} words", help="A chunk ends at a section's end, so many are short.")
    show_chart(figure(chunk_lengths, words, size, title=f"Words per chunk, {len(chunks):,} chunks"),
               partial(pd.DataFrame, {"page": [c.slug for c in chunks], "section": [c.section for c in chunks],
                                      "words": words, "text": [c.text for c in chunks]}),
               name=f"chunks-{size}-words", key="lengths")
    index = chunk_index(size, fingerprint)
    if index is not None:
        st.subheader("2. Retrieval: MiniLM finds the closest chunks", anchor="retrieval")
        ranking, retrieved, gold = show_retrieval(index, question, reference, k)
        st.subheader("3. The model answers, without and with the chunks", anchor="answers")
        run = follow(rag_job(question, reference, index, tuple(retrieved), tuple(ranking), max_new),
                     what="answers and measurements")
        if run is not None:
            show_answers(run, index, question, reference, k, retrieved, gold)
            st.subheader("4. Does the position of the answer matter?", anchor="position")
            show_positions(run)
