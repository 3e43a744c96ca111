from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.emergence import answer_tokens, power_curves, two_metrics
from engine.training.emergence import MAX_DIGITS, OPERATION_NAMES, OPERATIONS
from engine.tokens.offsets import visible
from ui import concept_page
from ui.charts import figure, show_chart
from ui.emergence import scored_problem, sweep_job
from ui.inputs import whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import escape_markdown

PER_DIGIT = [2, 4, 8]
SHORT = {"add": "Addition", "sub": "Subtraction", "mul": "× one digit"}


def pick(value, options, default):
    return value if value in options else default


with concept_page("emergent-abilities"):
    st.subheader("1 · One problem, digit by digit", anchor=False)
    st.markdown("SmolLM2 sees three solved examples and a new question. The correct answer is fed in after it "
                "(teacher forcing), and **one forward pass** gives the probability the model puts on each correct "
                "digit, each given the correct digits before it.")
    operation = pick(st.segmented_control("Operation", list(OPERATIONS), format_func=SHORT.get, default="add",
                                          key="op", bind="query-params",
                                          help="Multiplication takes a k-digit number times a single digit."),
                     list(OPERATIONS), "add")
    c2, c3 = st.columns([3, 1])
    digits = int(pick(c2.select_slider("Digits per operand (k)", list(range(1, MAX_DIGITS + 1)), value=3, key="k",
                                       bind="query-params"), list(range(1, MAX_DIGITS + 1)), 3))
    number = whole_number_input("Problem", 1, 8, 1, "n", container=c3,
                                help="Problems are drawn from a fixed seed: the same number is the same problem.")
    one = scored_problem(operation, digits, number - 1, 0)
    st.code(one.prompt + str(one.problem.answer), language=None)
    st.caption(f"The last line's answer, **{one.problem.answer}**, is the part being scored: "
               f"{len(one.answer_ids)} tokens, "
               + " · ".join(f"`{escape_markdown(visible(p))}`" for p in one.answer_pieces)
               + ". SmolLM2's tokenizer gives every digit its own token (read from the tokenizer just now), so an "
                 "answer of L digits is L predictions in a row.")
    a, b, c = metric_row(3)
    a.metric("Exact-match probability", f"{one.exact_probability:.3g}",
             "product of the bars", delta_color="off", delta_arrow="off",
             help="The chance that sampling writes the whole answer right: P(d1) × P(d2 | d1) × ... (chain rule).")
    b.metric("Mean per-token probability", f"{one.mean_token_probability:.4f}",
             f"{int(one.top_correct.sum())} of {len(one.answer_ids)} digits top choice", delta_color="off",
             delta_arrow="off")
    c.metric("Greedy decoding gets it", "yes" if one.greedy_exact else "no",
             "every digit top choice" if one.greedy_exact else "a digit is not top choice",
             delta_color="off", delta_arrow="off")
    show_chart(figure(answer_tokens, list(one.answer_pieces), one.token_probs.tolist(), list(one.top_pieces),
                      title=f"P(correct digit) at each position of {one.problem.answer}"),
               partial(pd.DataFrame, {"position": range(1, len(one.answer_ids) + 1), "correct_token": one.answer_pieces,
                                      "p_correct": one.token_probs, "model_top_choice": one.top_pieces}),
               name="answer-token-probabilities", key="one_chart")
    st.dataframe(pd.DataFrame({"position": range(1, len(one.answer_ids) + 1),
                               "correct digit": [visible(p) for p in one.answer_pieces],
                               "P(correct)": one.token_probs, "model's top choice": [visible(t) for t in one.top_pieces]}),
                 hide_index=True, key="one_table",
                 column_config={"P(correct)": st.column_config.NumberColumn(format="%.6f")})

    st.subheader("2 · k = 1 to 6: one set of numbers, two metrics", anchor=False)
    d1, d2 = st.columns([2, 1])
    per_digit = int(pick(d1.select_slider("Problems per k", PER_DIGIT, value=4, key="per", bind="query-params",
                                          help="Each problem is one forward pass; the scores are averages."),
                         PER_DIGIT, 4))
    log_y = d2.toggle("Log scale", value=False, key="log", bind="query-params",
                      help="On a log axis the exact-match curve turns out to be a steady slope too.")
    rows = follow(sweep_job(operation, per_digit, 0), what="scoring")
    if rows:
        ks = [r.digits for r in rows]
        predicted = [r.mean_token_probability ** r.answer_tokens for r in rows]
        first, last = rows[0], rows[-1]
        a, b = metric_row(2)
        a.metric(f"Per-token P at k = {last.digits}", f"{last.mean_token_probability:.3f}",
                 f"{first.mean_token_probability:.3f} at k = {first.digits}", delta_color="off", delta_arrow="off",
                 help="Averaged over the answer tokens of each problem, then over the problems.")
        b.metric(f"Exact match at k = {last.digits}", f"{last.exact_probability:.2g}",
                 f"{first.exact_probability:.3f} at k = {first.digits}", delta_color="off", delta_arrow="off",
                 help="The product of each answer's token probabilities, averaged over the problems.")
        show_chart(figure(two_metrics, ks, [r.mean_token_probability for r in rows], [r.token_accuracy for r in rows],
                          [r.exact_probability for r in rows], [r.greedy_exact for r in rows], predicted, log_y,
                          title=f"{OPERATION_NAMES[operation].capitalize()}: per token (blue) vs whole answer (red)"),
                   partial(pd.DataFrame, {"digits": ks, "answer_tokens": [r.answer_tokens for r in rows],
                                          "mean_p_correct_token": [r.mean_token_probability for r in rows],
                                          "token_accuracy": [r.token_accuracy for r in rows],
                                          "exact_match_probability": [r.exact_probability for r in rows],
                                          "greedy_exact_match": [r.greedy_exact for r in rows],
                                          "p_to_the_L": predicted}),
                   name="emergence-two-metrics", key="metrics_chart")
        change = (f" From k = {first.digits} to {last.digits} the per-token probability changed "
                  f"×{last.mean_token_probability / first.mean_token_probability:.2g} and the exact-match "
                  f"probability ×{last.exact_probability / first.exact_probability:.2g}."
                  if first.exact_probability > 0 and first.mean_token_probability > 0 else "")
        st.caption(f"Each point averages {per_digit} problems. Read left to right, it is the same model getting "
                   "longer answers, not a bigger model; but the arithmetic that turns one into the other is the "
                   "same: a whole answer needs every digit right, so its probability is roughly the per-token one "
                   "raised to the answer's length (dashed)." + change)
    elif rows is not None:
        st.info("The scoring stopped before the first size was done.", icon=":material/stop_circle:")

    st.subheader("3 · Why a smooth change looks like a jump", anchor=False)
    measured = one.mean_token_probability
    show_chart(figure(power_curves, [1, 2, 4, 6, 10], measured,
                      title="Whole-answer probability p^L as the per-token probability p improves"),
               partial(pd.DataFrame, {"p": np.linspace(0, 1, 201),
                                      **{f"L={n}": np.linspace(0, 1, 201) ** n for n in (1, 2, 4, 6, 10)}}),
               name="p-to-the-L", key="power_chart")
    st.caption("Suppose training a bigger model moves p up steadily. For a one-token answer the score rises in a "
               "straight line; for a ten-token answer it stays near zero until p is close to 1 and then shoots "
               "up: on a chart against model size that looks like an ability appearing. Schaeffer et al. (2023) "
               "showed that many claimed emergent abilities turn smooth under per-token or other continuous "
               "metrics. The dashed line marks the mean per-token probability of the problem above.")
