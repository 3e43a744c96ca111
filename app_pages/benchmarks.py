from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.benchmarks import accuracy_bars, item_scores as item_chart, token_logprobs
from engine.using.benchmarks import LETTERS, VARIANTS, accuracy, cloze_prompt, letter_prompt, load_items, load_passages
from engine.runtime.jobs import JobState
from ui import concept_page, prompt_input
from ui.benchmarks import item_scores, item_table, reading, set_job, variant_label
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import escape_markdown

AGAIN_FLAG = "_benchmarks_score_again"
SHORT = {"letters": "letters", "summed": "text, summed", "per_byte": "text, per byte"}
UNITS = {"letters": "ln p of the letter (nats)", "summed": "ln p of the answer (nats)",
         "per_byte": "ln p per byte (nats)"}
FRESH_TEXT = "The ferry to the island was late again, so we ate cold chips on the pier and counted gulls."


def one_item(items) -> None:
    st.subheader("1 · One question, scored three ways", anchor=False)
    labels = [f"{i + 1}. {item.question}" for i, item in enumerate(items)]
    index = labels.index(st.selectbox("Question", labels, key="item", bind="query-params",
                                      help="24 four-option questions written for this page, so no model has "
                                           "seen them."))
    item, scored = items[index], item_scores(index)
    m = metric_row(4)
    m[0].metric("True answer", f"{LETTERS[item.answer]}. {item.choices[item.answer]}")
    for slot, variant in zip(m[1:], VARIANTS):
        pick = scored.predicted(variant)
        slot.metric(f"Pick: {SHORT[variant]}", f"{LETTERS[pick]}. {item.choices[pick]}",
                    "right" if pick == item.answer else "wrong", delta_arrow="off",
                    delta_color="normal" if pick == item.answer else "inverse",
                    help=f"{variant_label(variant)}: the option with the highest score in this format.")
    options = [f"{letter}. {c}" for letter, c in zip(LETTERS, item.choices)]
    scores = [scored.scores(v) for v in VARIANTS]
    show_chart(figure(item_chart, options, [variant_label(v) for v in VARIANTS], scores, item.answer,
                      [UNITS[v] for v in VARIANTS], title=f"Question {index + 1}: every option's score"),
               partial(pd.DataFrame, {"option": options, **{v: list(s) for v, s in zip(VARIANTS, scores)},
                                      "true": [i == item.answer for i in range(4)]}),
               name=f"benchmarks-item-{index + 1}", key="item_chart")
    st.caption("Nothing is generated. Letters: the prompt lists the four options, and the model's probability "
               "of writing ' A', ' B', ' C' or ' D' next is read. Answer text: the prompt holds only the question, "
               "and each option's own words are scored after it, summed over their tokens or divided by their "
               "bytes. Scores are log-probabilities, so closer to 0 is likelier.")
    with st.expander("The exact prompts the model reads"):
        st.code(letter_prompt(item), language=None, wrap_lines=True)
        st.code(cloze_prompt(item) + "  ← then each option, e.g. ' " + item.choices[0] + "'", language=None,
                wrap_lines=True)


def whole_set(items) -> None:
    st.subheader("2 · The whole benchmark: accuracy and how sure it is", anchor=False)
    names = {variant_label(v): v for v in VARIANTS}   # the link carries the readable name
    variant = names[st.radio("Scoring format", list(names), key="variant", bind="query-params", horizontal=True,
                             help="Same questions, same model: only the way the answer is read changes.")]
    job = set_job(again=bool(st.session_state.pop(AGAIN_FLAG, False)))
    scored = follow(job, what=f"scoring of {len(items)} questions in three formats")
    if scored is None:
        if job.state is JobState.DONE:
            st.warning("The scoring stopped before the end, so no accuracy is shown: part of a benchmark is not "
                       "the benchmark.", icon=":material/timer_off:")
            st.button("Score again", key="score-again", icon=":material/refresh:",
                      on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
        return
    results = {v: accuracy(scored, v) for v in VARIANTS}
    chosen = results[variant]
    low, high = chosen.interval
    table = item_table(scored, variant)
    values = [r.value for r in results.values()]
    m = metric_row(4)
    m[0].metric("Accuracy", f"{100 * chosen.value:.1f}%", f"{chosen.correct} of {chosen.total} right",
                delta_color="off", delta_arrow="off", help=f"{variant_label(variant)}: questions whose "
                "highest-scoring option is the true answer, out of all questions.")
    m[1].metric("95% interval", f"{100 * low:.0f}% to {100 * high:.0f}%",
                help="Wilson score interval: with only this many questions, any accuracy in this range fits "
                     "the result. Two scores whose intervals overlap widely are not told apart.")
    m[2].metric("Chance", "25%", help="Guessing among four options. The answer key uses every letter.")
    m[3].metric("Spread over formats", f"{100 * (max(values) - min(values)):.0f} points",
                help="Best format's accuracy minus the worst's: same model, same questions.")
    show_chart(figure(accuracy_bars, [variant_label(v) for v in VARIANTS], values,
                      [r.interval[0] for r in results.values()], [r.interval[1] for r in results.values()], 0.25,
                      list(VARIANTS).index(variant), title=f"Accuracy on {len(items)} questions, by scoring format"),
               partial(pd.DataFrame, {"format": list(VARIANTS), "correct": [r.correct for r in results.values()],
                                      "total": [r.total for r in results.values()], "accuracy": values,
                                      "ci95_low": [r.interval[0] for r in results.values()],
                                      "ci95_high": [r.interval[1] for r in results.values()]}),
               name="benchmarks-accuracy", key="accuracy_chart")
    letters = np.bincount([s.predicted("letters") for s in scored], minlength=4)
    st.caption("How often the lettered format picks each letter: " + ", ".join(
        f"{letter} {n}" for letter, n in zip(LETTERS, letters)) + " (the key: " + ", ".join(
        f"{letter} {sum(i.answer == j for i in items)}" for j, letter in enumerate(LETTERS)) + "). A small model "
        "tends to favour one letter whatever the question: it has not learned to tie a letter to an option.")
    st.dataframe(table, hide_index=True, width="stretch", key="item_table", column_config={
        "question": st.column_config.TextColumn(width="large"), "correct": st.column_config.CheckboxColumn()})
    st.caption(f"{int(table['correct'].sum())} correct of {len(table)} in this table; scores: "
               f"{UNITS[variant]}.")


def contamination() -> None:
    st.subheader("3 · Contamination: a famous text against a paraphrase", anchor=False)
    passages = load_passages()
    left, right = st.columns([3, 2])
    names = [p.name for p in passages]
    index = names.index(left.selectbox("Famous passage", names, key="passage", bind="query-params",
                           help="Public-domain texts quoted all over the web, each beside a paraphrase written "
                                "for this page with the same meaning and different words."))
    k = right.slider("k: share of least likely tokens averaged (%)", 5, 50, 20, 5, key="k", bind="query-params",
                     help="Min-K% Prob averages the ln p of the k% least likely tokens of a text.")
    own = prompt_input("text", FRESH_TEXT, "Your own text (scored the same way)", max_chars=400, max_tokens=80)
    passage = passages[index]
    texts = [("verbatim", passage.verbatim), ("paraphrase", passage.paraphrase)]
    if own.strip():
        texts.append(("your text", own))
    read = [(name, *reading(text)) for name, text in texts]
    if any(not len(r.logprobs) for _, r, _ in read):
        st.caption("Your text is a single token: nothing in it can be scored (the first token has no context).")
    read = [(name, r, toks) for name, r, toks in read if len(r.logprobs)]
    m = metric_row(len(read))
    for slot, (name, r, _) in zip(m, read):
        slot.metric(f"Min-K% ({k}%): {name}", f"{r.min_k(k):.2f}", f"perplexity {r.perplexity:.1f}",
                    delta_color="off", delta_arrow="off",
                    help=f"Mean ln p of its {len(r.lowest(k))} least likely tokens (of {len(r.logprobs)}). "
                         "Closer to 0 hints the text was seen in training. Perplexity = exp(mean loss).")
    m2 = metric_row(len(read))
    for slot, (name, r, _) in zip(m2, read):
        slot.metric(f"Guessed exactly: {name}", f"{100 * r.top1_share:.0f}%",
                    f"{int(r.top1.sum())} of {len(r.top1)} tokens", delta_color="off", delta_arrow="off",
                    help="Tokens that were the model's single most likely next token: a memorised text is "
                         "guessed token after token.")
    show_chart(figure(token_logprobs, [(name, toks, r.logprobs, r.lowest(k)) for name, r, toks in read],
                      title="How likely the model finds each token"),
               partial(pd.DataFrame, [{"text": name, "position": i + 1, "token": t, "logprob": float(lp),
                                       "in_lowest_k": i in set(r.lowest(k).tolist())}
                                      for name, r, toks in read for i, (t, lp) in enumerate(zip(toks, r.logprobs))]),
               name=f"benchmarks-contamination-{index + 1}-k{k}", key="contamination_chart")
    st.markdown(f"**Verbatim:** {escape_markdown(passage.verbatim)}  \n"
                f"**Paraphrase:** {escape_markdown(passage.paraphrase)}")
    st.caption("The first token of each text has nothing before it and is not scored. A benchmark question copied "
               "onto the web would look like the verbatim line to a model trained on that web: every word expected. "
               "On one short text Min-K% is a noisy signal: on the Gettysburg Address the rare opening words "
               "('Four score') pull the verbatim score below the paraphrase's, although its perplexity and its "
               "share of exactly guessed tokens still give it away.")


with concept_page("benchmarks"):
    bundled = load_items()
    one_item(bundled)
    whole_set(bundled)
    contamination()
