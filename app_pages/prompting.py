from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.prompting import accuracy_bars, choice_scores, label_shares, sweep_points
from engine.runtime.jobs import JobState
from engine.using.prompting import (MAX_SHOTS, build_prompt, chance_accuracy, choice_probabilities, choose_demonstrations,
                              load_questions, load_tasks)
from engine.tokens.offsets import decode_each, visible
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.prompting import (REASONING_TEMPERATURE, REASONING_TOKENS, SWEEP_SEEDS, SWEEP_SHOTS, choice_rows,
                          reasoning_job, set_job, set_table, sweep_job, sweep_plan, text_scores)
from ui.text import escape_markdown

TEXT_KEY = "text"
AGAIN_FLAG = "_prompting_score_again"   # set by the "Score again" button, read once by the next run
PRESETS = {"sentiment": ["The pasta arrived cold, but the dessert almost made up for it.",
                         "Honestly the best concert I have been to in years."],
           "topic": ["The league fined the club for fielding an ineligible player.",
                     "A new battery chemistry could halve the cost of storing solar power."]}
SCORES = {"summed": "Summed ln p", "per token": "Per token (length-normalised)"}


def use_text(text: str) -> None:
    st.session_state[TEXT_KEY] = text


def off(label: str, value: str, note: str, slot, help: str | None = None) -> None:
    slot.metric(label, value, note, delta_color="off", delta_arrow="off", help=help)


def one_text(task_key: str, task, verbalizer: str, words, k: int, seed: int, normalise: bool, score: str) -> None:
    st.subheader("1 · One text, every answer scored", anchor=False)
    text = prompt_input(TEXT_KEY, PRESETS["sentiment"][0], "Text to classify", max_chars=400, max_tokens=80)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Try:", width="content")
        for i, preset in enumerate(PRESETS[task_key]):
            st.button(preset, key=f"preset-{task_key}-{i}", on_click=use_text, args=(preset,), width="content")
    if not text.strip():
        st.info("Type a sentence above (a review, a headline), or pick one: the model scores every answer after "
                "the prompt without generating anything.", icon=":material/edit:")
        return
    zero, few = text_scores(task_key, verbalizer, 0, 0, text), text_scores(task_key, verbalizer, k, seed, text)
    conditions = [(f"zero-shot ({zero.prompt_tokens} prompt tokens)", zero)]
    if k:
        conditions.append((f"{k}-shot, order seed {seed} ({few.prompt_tokens} tokens)", few))
    shown = [(name, c.scores(normalise), choice_probabilities(c.scores(False))) for name, c in conditions]
    last = np.sort(shown[-1][1])
    m = metric_row(3)
    m[0].metric("Zero-shot answer", words[int(np.argmax(shown[0][1]))],
                help="The answer with the highest score after the instruction alone.")
    m[1].metric(f"{k}-shot answer", words[int(np.argmax(shown[-1][1]))],
                help="The answer with the highest score after the instruction and the k solved examples.")
    m[2].metric("Margin of the winner", f"{last[-1] - last[-2]:.2f}", help=f"{SCORES[score]} of the best answer "
                "minus the runner-up's, under the last prompt. Near 0 is a coin flip.")
    show_chart(figure(choice_scores, words, shown, SCORES[score],
                      title="Your text: each answer's share (its score on top)"),
               partial(pd.DataFrame, choice_rows(conditions, words)),
               name=f"prompting-choices-{task_key}-k{k}", key="choices_chart")
    st.caption("Nothing is generated: the model reads the prompt followed by each answer. The number on a bar is the "
               "answer's score (closer to 0 is likelier); the bar's height turns the summed scores into shares of "
               "100% over these answers only. An orange outline marks the answer chosen under the score you picked.")
    with st.expander(f"The exact {k}-shot prompt the model reads"):
        st.code(build_prompt(task, words, choose_demonstrations(task, k, seed), text), language=None,
                wrap_lines=True)
        pieces = "; ".join(f"'{escape_markdown(w)}' = {len(cs.token_ids)} token(s) "
                           f"[{', '.join(visible(t) for t in decode_each(lm(), list(cs.token_ids)))}]"
                           for w, cs in zip(words, few.choices))
        st.caption(f"Each answer is appended after the final colon, with its leading space, tokenized on its own: "
                   f"{pieces}.")


def labelled_set(task_key: str, task, verbalizer: str, words, k: int, seed: int, normalise: bool, score: str,
                 calibrate: bool) -> None:
    job = set_job(task_key, verbalizer, k, seed, again=bool(st.session_state.pop(AGAIN_FLAG, False)))
    result = follow(job, what=f"scoring of {len(task.test)} items × {len(words)} answers")
    if result is None:
        if job.state is JobState.DONE:
            st.warning("The scoring stopped before the end (stopped, or its time budget ran out on a busy server), "
                       "so no accuracy is shown: a partial set would not compare.", icon=":material/timer_off:")
            st.button("Score again", key="score-again", icon=":material/refresh:",
                      on_click=st.session_state.__setitem__, args=(AGAIN_FLAG, True))
        return
    conds, names = (result.zero_shot, result.few_shot), ["zero-shot", f"{k}-shot"]
    accuracy = [c.accuracy(normalise, calibrate) for c in conds]
    chance = chance_accuracy(task)
    m = metric_row(4)
    for slot, name, cond, acc in zip(m, names, conds, accuracy):
        off(f"{name.capitalize()} accuracy", f"{100 * acc:.1f}%",
            f"{cond.correct(normalise, calibrate)} of {len(cond.items)} right", slot,
            "Items whose highest-scoring answer is the true label, out of all items.")
    m[2].metric("Commonest label, always", f"{100 * chance:.1f}%",
                help="The floor: the same label every time. A prompt worth using beats it.")
    m[3].metric("Effect of the examples", f"{100 * (accuracy[1] - accuracy[0]):+.1f} points",
                help=f"{k}-shot accuracy minus zero-shot accuracy, on the same items.")
    if k == 0:
        st.caption("With k = 0 both prompts are the same zero-shot prompt: raise k to compare.")
    raw = [c.accuracy(normalise) for c in conds]
    cal = [c.accuracy(normalise, True) for c in conds]
    show_chart(figure(accuracy_bars, names, raw, cal if calibrate else None, chance,
                      title=f"Accuracy on {len(task.test)} items, {SCORES[score].lower()}"),
               partial(pd.DataFrame, {"prompt": names, "accuracy": raw, "calibrated_accuracy": cal}),
               name=f"prompting-accuracy-{task_key}-k{k}-seed{seed}", key="accuracy_chart")
    share_names = [f"{n}{' (calibrated)' if calibrate else ''}" for n in names]
    shares = np.vstack([c.predicted_share(normalise, calibrate) for c in conds])
    truth = [sum(e.label == lab for e in task.test) / len(task.test) for lab in task.labels]
    show_chart(figure(label_shares, share_names, words, shares, truth,
                      title="How often each answer is given, against the truth"),
               partial(pd.DataFrame, {"prompt": share_names + ["true labels"],
                                      **{w: list(shares[:, j]) + [truth[j]] for j, w in enumerate(words)}}),
               name=f"prompting-label-shares-{task_key}-k{k}-seed{seed}", key="shares_chart")
    free = "; ".join(f"{name}: " + ", ".join(f"'{escape_markdown(w)}' {s:.2f}" for w, s in
                                            zip(words, c.content_free.scores(normalise)))
                     for name, c in zip(names, conds))
    st.caption("A prompt can tilt the model toward one answer for every item: toward the last example's label, or "
               "the label most examples carry (Zhao et al. call these recency and majority-label bias). Calibration "
               f"measures that tilt with 'N/A' as the text and subtracts it. Scores for 'N/A' ({free}).")
    for tab, name, cond in zip(st.tabs(["Zero-shot: every item", f"{k}-shot: every item"]), names, conds):
        with tab:
            table = set_table(cond, words, normalise, calibrate)
            st.dataframe(table, hide_index=True, width="stretch", key=f"table-{name}", column_config={
                "text": st.column_config.TextColumn(width="large"), "correct": st.column_config.CheckboxColumn()})
            st.caption(f"{int(table['correct'].sum())} correct of {len(table)}. Scores: {SCORES[score].lower()}, "
                       "in nats" + ("; the calibrated columns subtract the scores for 'N/A' under this prompt, and "
                                    "the prediction is their largest." if calibrate else "."))


def sweep(task_key: str, task, verbalizer: str, k: int, seed: int, normalise: bool, calibrate: bool) -> None:
    swept = follow(sweep_job(task_key, verbalizer), what="sweep over shots and orders")
    if not swept:
        return
    shots, seeds = [c.k for c in swept], [c.seed for c in swept]
    raw = [c.accuracy(normalise) for c in swept]
    cal = [c.accuracy(normalise, True) for c in swept]
    show_chart(figure(sweep_points, shots, seeds, raw, cal if calibrate else None, chance_accuracy(task), (k, seed),
                      title="Accuracy against shots, one dot per example order"),
               partial(pd.DataFrame, {"k": shots, "order_seed": seeds, "accuracy": raw, "calibrated_accuracy": cal,
                                      "example_labels": [" ".join(d.label for d in c.demonstrations) for c in swept]}),
               name=f"prompting-sweep-{task_key}", key="sweep_chart")
    spread = {s: [a for kk, a in zip(shots, raw) if kk == s] for s in sorted(set(shots))}
    widest = max(spread, key=lambda s: max(spread[s]) - min(spread[s]))
    m = metric_row(3)
    off("Widest spread over orders", f"{100 * (max(spread[widest]) - min(spread[widest])):.0f} points",
        f"at k = {widest}", m[0], "Best order's accuracy minus the worst order's, for the same k examples.")
    m[1].metric("Best prompt", f"{100 * max(raw):.0f}%", help="The highest accuracy of any k and order.")
    m[2].metric("Worst prompt", f"{100 * min(raw):.0f}%", help="The lowest: the same model and the same items.")
    if len(swept) < len(sweep_plan(task_key)):
        st.caption(f"The sweep stopped after {len(swept)} of {len(sweep_plan(task_key))} prompts: those are shown.")


def reasoning() -> None:
    questions = load_questions()
    question = st.selectbox("Word problem", range(len(questions)), format_func=lambda i: questions[i].text,
                            key="question", bind="query-params")
    q2, q3 = st.columns([2, 1], vertical_alignment="bottom")
    samples = q2.slider("Sampled chains", 3, 7, 5, key="samples", bind="query-params",
                        help=f"Self-consistency: sample step-by-step answers at temperature {REASONING_TEMPERATURE}"
                             " and take the final number most of them reach.")
    run = q3.toggle("Generate", value=False, key="reason", bind="query-params",
                    help=f"{2 + samples} replies of up to {REASONING_TOKENS} tokens: tens of seconds on this CPU.")
    if not run:
        st.info("Switch on **Generate** to ask the question three ways in the model's chat template: directly, "
                "with 'Let's think step by step' (greedy), and as several sampled chains whose final numbers vote.",
                icon=":material/psychology:")
        return
    run = follow(reasoning_job(question, samples, REASONING_TEMPERATURE, REASONING_TOKENS, 0), what="generation")
    if not run:
        return
    gold, (vote, votes) = run.question.answer, run.vote
    replies = [r for r in (run.direct, run.step_by_step) if r] + list(run.samples)
    m = metric_row(4)
    for slot, name, reply in ((m[0], "Direct", run.direct), (m[1], "Step by step", run.step_by_step)):
        if reply:
            off(f"{name} answer", "none" if reply.number is None else str(reply.number),
                "right" if reply.number == gold else "wrong", slot, "The last number the reply states.")
    off("Majority of the samples", "none" if vote is None else str(vote),
        f"{votes} of {len(run.samples)} votes · {'right' if vote == gold else 'wrong'}", m[2])
    off("Samples that are right", f"{sum(r.number == gold for r in run.samples)} of {len(run.samples)}",
        f"the answer is {gold}", m[3])
    if len(run.samples) < samples:
        st.caption(f"The run stopped after {len(run.samples)} of {samples} samples (stopped, or its time budget "
                   "ran out on a busy server): the vote counts those.")
    st.dataframe(pd.DataFrame({"reply": [r.style for r in replies], "final number": [r.number for r in replies],
                               "right": [r.number == gold for r in replies], "text": [r.text for r in replies]}),
                 hide_index=True, width="stretch", key="replies")
    st.caption("Honestly: chain of thought helped only models of about a hundred billion parameters (Wei et al. "
               "2022). At 135M the steps read fluently but the arithmetic inside them is often wrong, and a wrong "
               "chain can spoil an answer the model gets right directly. A vote only helps when most chains are "
               "right, so here it often settles on a wrong number, or on the right one by luck.")


with concept_page("prompting"):
    tasks = load_tasks()
    c1, c2 = st.columns(2)
    task_key = c1.selectbox("Task", list(tasks), format_func=lambda t: tasks[t].title, key="task",
                            bind="query-params", help="Both sets were written for this page: 24 test items, "
                            "balanced across labels, and a separate pool of 8 solved examples for the prompt.")
    task = tasks[task_key]
    verbalizer = c2.selectbox("Answer words", task.verbalizer_names, key=f"words-{task_key}", bind="query-params",
                              help="The words each label is scored as. The wording of the answers is itself a "
                                   "prompting choice, and it moves accuracy.")
    words = task.words(verbalizer)
    c3, c4, c5 = st.columns([2, 1, 2])
    k = c3.slider("Shots k (solved examples in the prompt)", 0, MAX_SHOTS, 4, key="k", bind="query-params",
                  help="k = 0 is zero-shot: the instruction alone. The examples come from a separate pool, labels "
                       "taken in turn, so an odd k gives one label an extra example.")
    seed = whole_number_input("Example order (seed)", 0, 9999, 0, "seed", container=c4,
                              help="Shuffles the same k examples into another order; nothing else changes.")
    score = c5.radio("Score each answer by", list(SCORES), key="score",
                     bind="query-params", horizontal=True,
                     help="Summed: ln p of the whole answer. Per token: that sum divided by the answer's token "
                          "count, so a two-token answer is not penalised for its length.") or "summed"
    normalise = score == "per token"
    one_text(task_key, task, verbalizer, words, k, seed, normalise, score)

    st.subheader("2 · Accuracy on the labelled set: zero-shot against few-shot", anchor=False)
    calibrate = st.toggle("Calibrate before use (Zhao et al. 2021)", value=False, key="calibrate",
                          bind="query-params", help="Also score the prompt with 'N/A' as the text. Whatever the "
                          "prompt alone makes the model favour shows up there; subtracting those scores from every "
                          "item's removes the tilt before choosing.")
    labelled_set(task_key, task, verbalizer, words, k, seed, normalise, score, calibrate)

    st.subheader("3 · Shots and example order, swept", anchor=False)
    if st.toggle("Sweep k and the example order", value=False, key="sweep", bind="query-params",
                 help=f"Scores the whole set for k in {', '.join(map(str, SWEEP_SHOTS))} with up to "
                      f"{len(SWEEP_SEEDS)} orders each (one run per distinct prompt). Stored on the server, so a "
                      "shared link opens it at once."):
        sweep(task_key, task, verbalizer, k, seed, normalise, calibrate)
    else:
        st.info("Switch on **Sweep k and the example order** to score the set under every number of shots and "
                "several orders of the same examples: about half a minute to a few minutes, depending on the "
                "server's load.", icon=":material/scatter_plot:")

    st.subheader("4 · Chain of thought and self-consistency: what a 135M model can do", anchor=False)
    reasoning()
