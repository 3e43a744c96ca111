from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.distillation import gradient_curves, learning_curves, soft_target_bars
from engine.training.distillation import (Setup, distillation_loss, gradient_sizes, log_soft, middle_block, reverse_kl,
                                 soft_targets)
from engine.tokens.offsets import visible
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.distillation import (MAX_TOKENS, gradient_curve, ids_of, starting_position, student_logits, teacher_layers,
                             teacher_logits, training_job)
from ui.inputs import ranged_slider, stop_if_empty, whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.loss import pieces
from ui.text import escape_markdown, latex_number, ordinal, token_markdown

TEXT_KEY = "text"
DEFAULT_TEXT = "My favourite fruits are apples, pears and bananas, but my sister prefers oranges."
PRESETS = {"Fruits": DEFAULT_TEXT,
           "Market": "On Monday I went to the market and bought three kilos of potatoes, two onions and a cabbage.",
           "Code": "for i in range(10):\n    print(i * i)"}
SHOWN = 10              # tokens drawn in the soft-target chart and listed in the KL table
TEMPERATURES = np.round(np.arange(1.0, 10.01, 0.25), 2)
CURVES = {"Loss on the true tokens": ("held_loss", "nats per token (lower is better)", False),
          "KL to the teacher": ("held_kl", "KL(teacher ‖ student), nats (lower is better)", False),
          "Agreement with the teacher": ("held_agreement", "top-1 agreement with the teacher (%)", True)}


def use_text(text: str) -> None:
    st.session_state[TEXT_KEY] = text


def bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum())


with concept_page("distillation"):
    text = prompt_input(TEXT_KEY, DEFAULT_TEXT, "Your text (the teacher reads it)", max_tokens=MAX_TOKENS, height=80)
    with st.container(horizontal=True, gap="small"):
        for name, preset in PRESETS.items():
            st.button(name, key=f"preset-{name.lower()}", on_click=use_text, args=(preset,), width="content")
    stop_if_empty(text, "Type a sentence above (or pick a preset) to see the teacher's soft targets for it.")
    ids = ids_of(text)
    if len(ids) < 2:
        st.info("This text is a single token: there is no next token to predict. Add a few words.",
                icon=":material/edit:")
        st.stop()
    teacher = teacher_logits(text)
    texts = pieces(ids)

    left, right = st.columns(2)
    t = left.slider("Distillation temperature T", 1.0, 10.0, 2.0, 0.5, key="t", bind="query-params",
                    help="Teacher and student logits are both divided by T before the softmax. T = 1 is the "
                         "teacher as it is; a higher T spreads its probability over more tokens.")
    alpha = right.slider("Weight of the soft targets α", 0.0, 1.0, 1.0, 0.1, key="alpha",
                         bind="query-params",
                         help="The student's loss is α · T² · KL(teacher ‖ student) + (1 − α) · cross-entropy "
                              "with the hard label. α = 1 learns from the soft targets only; α = 0 is ordinary "
                              "training.")
    position = ranged_slider("Token to predict", 1, len(ids) - 1, starting_position(text), "pos",
                             help="Which token of your text the teacher predicts from the tokens before it. The "
                                  "default is where the teacher is least sure while still ranking the true "
                                  "token in its top 10.")
    row, truth = position - 1, ids[position]
    p1, p_t = soft_targets(teacher[row], 1.0), soft_targets(teacher[row], t)
    order = [int(i) for i in np.argsort(-p1, kind="stable")[:SHOWN]]
    rank = int((p1 > p1[truth]).sum()) + 1
    shown = order if truth in order else order + [truth]
    labels = [visible(s) for s in pieces(tuple(shown))]
    if truth not in order:
        labels[-1] += f" (rank {rank:,})"

    st.subheader("Soft targets against the hard label", anchor=False)
    context = escape_markdown(visible("".join(texts[max(0, position - 8):position])))
    st.markdown(f"After *…{context}* your text continues with {token_markdown(texts[position])}. Ordinary "
                f"training would use only that: a **hard label**, 100% on one token of {teacher.shape[1]:,}. "
                f"Distillation trains on the teacher's whole distribution instead, softened by T.")
    m1, m2, m3, m4 = metric_row(4)
    m1.metric(f"True token at T = {t:g}", f"{100 * p_t[truth]:.2f}%",
              f"{100 * p1[truth]:.2f}% at T = 1 ({ordinal(rank)} choice)", delta_color="off", delta_arrow="off",
              help="The teacher's probability of the token that actually came next. The hard label gives it 100%.")
    m2.metric(f"Entropy at T = {t:g}", f"{bits(p_t):.2f} bits", f"{bits(p1):.2f} bits at T = 1",
              delta_color="off", delta_arrow="off",
              help="How spread out the soft targets are. A hard label has 0 bits.")
    m3.metric("Mass off the true token", f"{100 * (1 - p_t[truth]):.2f}%",
              help="What the hard label throws away: how likely the teacher finds the tokens that did not come "
                   "next, which is where it shows which tokens it finds similar.")
    m4.metric("Tokens for 90% of mass", f"{int(np.searchsorted(np.cumsum(np.sort(p_t)[::-1]), 0.9)) + 1:,}",
              f"{int(np.searchsorted(np.cumsum(np.sort(p1)[::-1]), 0.9)) + 1:,} at T = 1", delta_color="off",
              delta_arrow="off", help="The fewest tokens whose soft targets add up to 90%: a higher T spreads the "
                                      "mass over more of the 49,152.")
    log_scale = st.toggle("Log scale", value=True, key="log", bind="query-params",
                          help="On a log axis the small probabilities, where the teacher's knowledge of "
                               "similar tokens sits, stay visible next to the hard label's 100%. Dividing the "
                               "logits by T shrinks the gaps between their logarithms.")
    show_chart(figure(soft_target_bars, labels, shown, p1[shown], p_t[shown], shown.index(truth), t, log_scale,
                      title=f"What the student is shown for token {position}: hard label or soft targets"),
               partial(pd.DataFrame, {"token": labels, "token_id": shown,
                                      "hard_label": [float(i == truth) for i in shown], "teacher_T1": p1[shown],
                                      f"soft_target_T{t:g}": p_t[shown]}),
               name=f"soft-targets-T{t:g}", key="soft_targets")
    ceiling = float(np.log2(teacher.shape[1]))
    st.caption(f"The hard label has no spread at all (0 bits); the soft targets at T = {t:g} have {bits(p_t):.2f} of "
               f"the at most {ceiling:.2f} bits that {teacher.shape[1]:,} tokens allow."
               + (" That is close to uniform: with a vocabulary this large, a high T hands most of the mass to "
                  "tokens that make no sense here, and the useful ranking is drowned." if bits(p_t) > 0.9 * ceiling
                  else " Dividing the logits by T keeps the teacher's ranking and lifts the small probabilities, "
                       "where its sense of which tokens are alike sits."))

    st.subheader("The loss a student would minimize", anchor=False)
    total_layers = teacher_layers()
    removed = st.slider("Student: the teacher with this many middle layers removed", 1, total_layers - 2, 8,
                        key="drop", bind="query-params",
                        help="Depth pruning, one of the ways Minitron made smaller models from a bigger one: a "
                             "block of layers from the middle of the stack is taken out, the rest kept as they are. "
                             "Before retraining, the pruned model's predictions have drifted from the teacher's; "
                             "distillation is how they are pulled back.")
    block = sorted(middle_block(total_layers, removed))
    st.caption(f"The student keeps {total_layers - removed} of {total_layers} layers: layers {block[0] + 1} to "
               f"{block[-1] + 1} are removed, so the residual stream passes from layer {block[0]} straight to "
               f"layer {block[-1] + 2}. Its predictions below are real; it has not been trained yet.")
    student = student_logits(text, removed)
    loss = distillation_loss(teacher[row], student[row], t)
    ce = float(-log_soft(student[row], 1.0)[truth])
    total = alpha * loss.scaled + (1 - alpha) * ce
    top_terms = order[:5]
    rest = float(loss.terms.sum() - loss.terms[top_terms].sum())
    vocab = teacher.shape[1]
    table = pd.DataFrame({
        "token": [visible(s) for s in pieces(tuple(top_terms))] + [f"{vocab - len(top_terms):,} others"],
        "teacher p_T": list(loss.teacher[top_terms]) + [float(1 - loss.teacher[top_terms].sum())],
        "student q_T": list(loss.student[top_terms]) + [float(1 - loss.student[top_terms].sum())],
        "p_T · ln(p_T / q_T)": list(loss.terms[top_terms]) + [rest]})
    st.dataframe(table, hide_index=True, key="kl_table", column_config={
        c: st.column_config.NumberColumn(format="%.4g") for c in table.columns[1:]})
    p_tex, q_tex = ([latex_number(float(d[i]), 3) for i in top_terms[:2]] for d in (loss.teacher, loss.student))
    filled = " + ".join(rf"{p}\ln\frac{{{p}}}{{{q}}}" for p, q in zip(p_tex[:2], q_tex[:2]))
    st.latex(rf"\begin{{aligned}}\mathrm{{KL}}(p_T\,\|\,q_T) &= \sum_{{i=1}}^{{{vocab:,}}} p_{{T,i}} \ln"
             rf"\frac{{p_{{T,i}}}}{{q_{{T,i}}}} \\ &= {filled} + \dots \\ &= {loss.kl:.4f}\ \text{{nats}}"
             rf"\end{{aligned}}")
    st.latex(rf"\begin{{aligned}}\mathcal{{L}} &= \alpha\,T^2\,\mathrm{{KL}} + (1-\alpha)\,\mathrm{{CE}}(y, q_1)"
             rf"\\ &= {alpha:g} \times {t:g}^2 \times {loss.kl:.4f} + {1 - alpha:g} \times {ce:.4f} \\ &= {total:.4f}"
             rf"\end{{aligned}}")
    k1, k2, k3, k4 = metric_row(4)
    k1.metric("KL(teacher ‖ student) at T", f"{loss.kl:.4f} nats",
              help="The forward direction: the teacher's probabilities weight the log-ratio. PyTorch's "
                   "kl_div(student log-probs, teacher probs) computes exactly this.")
    k2.metric("Soft term T² · KL", f"{loss.scaled:.4f}", f"× {t * t:g}", delta_color="off", delta_arrow="off")
    k3.metric("Hard-label cross-entropy", f"{ce:.4f} nats", help="−ln q(true token) with the student at T = 1.")
    k4.metric("Reverse KL(student ‖ teacher)", f"{reverse_kl(loss):.4f} nats", help="The other direction, not the "
              "one distillation uses: KL is not symmetric. The forward KL punishes a student that misses tokens "
              "the teacher likes; the reverse one punishes a student that puts mass where the teacher has none.")

    without, scaled = gradient_curve(text, position, removed, tuple(TEMPERATURES))
    now = gradient_sizes(teacher[row], student[row], np.array([t]))
    show_chart(figure(gradient_curves, TEMPERATURES, without, scaled, t, (float(now[0][0]), float(now[1][0])),
                      title="Why T²: the soft term's pull on the student's logits, at this token"),
               partial(pd.DataFrame, {"temperature": TEMPERATURES, "gradient_KL": without, "gradient_T2_KL": scaled}),
               name="gradient-vs-temperature", key="gradients")
    five = int(np.flatnonzero(TEMPERATURES == 5.0)[0])
    st.caption(f"The gradient of KL(p_T ‖ q_T) on the student's logits is (q_T − p_T)/T, and the gap q_T − p_T "
               f"shrinks too as T grows, so the soft term's pull falls roughly like 1/T²: "
               f"×{without[-1] / without[0]:.2g} here from T = 1 to 10. Multiplying by T² cancels the 1/T² "
               f"(×{scaled[-1] / scaled[0]:.2g} with it); "
               f"what is left is the soft targets themselves changing, which settles as T grows: from T = 5 to 10 "
               f"the scaled pull changes ×{scaled[-1] / scaled[five]:.2g}, the unscaled one ×"
               f"{without[-1] / without[five]:.2g}. So α keeps about the same meaning while you try temperatures.")

    st.subheader("Train a tiny student: hard labels against soft targets", anchor=False)
    c1, c2, c3 = st.columns([2, 1, 2], vertical_alignment="bottom")
    steps = c1.slider("Training steps", 100, 1000, 300, 50, key="steps", bind="query-params",
                      help="Each step is one minibatch of 256 positions of the corpus. Both students take the same "
                           "steps on the same minibatches.")
    seed = whole_number_input("Seed", 0, 9999, 0, "seed", container=c2,
                              help="Sets both students' starting weights and the order of the minibatches.")
    view = c3.selectbox("Curve", list(CURVES), key="curve", bind="query-params") or next(iter(CURVES))
    result = follow(training_job(Setup(temperature=t, alpha=alpha, steps=steps, seed=seed)), what="training")
    if result is not None:
        hard, soft = result.hard.final, result.soft.final
        if result.soft.steps_done < steps:
            st.warning(f"This run was stopped early: the hard-label student trained {result.hard.steps_done} steps, "
                       f"the soft-target one {result.soft.steps_done}, of the {steps} asked for.",
                       icon=":material/stop_circle:")
        st.markdown(f"Two copies of the same student ({result.student_parameters:,} parameters: it sees only the "
                    f"two tokens before the one it predicts) trained for {result.soft.steps_done} steps on "
                    f"{result.train_positions:,} positions of a {result.corpus_tokens:,}-token bundled corpus, "
                    f"one on hard labels, one on SmolLM2's soft targets at T = {t:g} (α = {alpha:g}). Scored on "
                    f"{result.held_positions:,} positions of paragraphs neither saw, over the corpus's "
                    f"{result.vocabulary:,} distinct tokens.")
        s1, s2, s3, s4 = metric_row(4)
        s1.metric("KL to the teacher, soft", f"{soft.kl_to_teacher:.3f} nats",
                  f"{soft.kl_to_teacher - hard.kl_to_teacher:+.3f} vs hard ({hard.kl_to_teacher:.3f})",
                  delta_color="inverse", help="Mean KL(teacher ‖ student) at T = 1 on the held-out positions.")
        s2.metric("Agrees with the teacher, soft", f"{100 * soft.agreement:.1f}%",
                  f"{100 * (soft.agreement - hard.agreement):+.1f} points vs hard ({100 * hard.agreement:.1f}%)",
                  help="Share of held-out positions where the student's top token is the teacher's top token.")
        s3.metric("Held-out loss, soft", f"{soft.loss:.3f} nats", f"{soft.loss - hard.loss:+.3f} vs hard "
                  f"({hard.loss:.3f})", delta_color="inverse", help="−ln q(true next token), averaged: how well "
                  "the student predicts the real text, not the teacher.")
        s4.metric("Teacher's own held-out loss", f"{result.teacher_held.loss:.3f} nats",
                  help="SmolLM2 on the same positions and the same vocabulary: how far both students are from it.")
        key, y_title, percent = CURVES[view]
        runs = (result.hard, result.soft)
        with_train = key == "held_loss"
        teacher_line = {"held_loss": result.teacher_held.loss, "held_agreement": None, "held_kl": None}[key]
        show_chart(figure(learning_curves, runs[0].curve_steps, getattr(runs[0], key), runs[1].curve_steps,
                          getattr(runs[1], key), y_title, runs[0].train_loss if with_train else None,
                          runs[1].train_loss if with_train else None, teacher_line, "the teacher (SmolLM2)",
                          percent, title=f"{view}: hard-label against soft-target student"),
                   lambda: pd.concat([pd.DataFrame({
                       "student": "soft-target" if r.soft else "hard-label", "step": r.curve_steps,
                       **{name: getattr(r, name) for name in ("train_loss", "held_loss", "held_kl", "held_agreement")}})
                       for r in runs]),
                   name=f"distillation-{key}", key="curves")
        st.caption(f"Honestly: neither student comes near the teacher; seeing two tokens, they cannot. The "
                   f"hard-label one learns its {result.train_positions:,} examples by heart (loss "
                   f"{result.hard.train_final.loss:.2f} on them, {hard.loss:.2f} on new text), and "
                   f"{100 * result.unseen_held_targets:.0f}% of the held-out tokens never occur as a label in its "
                   "training text, so it gives them almost nothing. The soft targets put probability on them and "
                   "cannot be memorized as one answer per context. The teacher's distribution is renormalized "
                   f"over the corpus's tokens, which hold {100 * result.teacher_coverage:.0f}% of its probability "
                   "on average. Real distillation (DistilBERT, Gemma 2) trains students of tens of millions to "
                   "billions of parameters on billions of tokens: the size of the gaps here says nothing about theirs.")
