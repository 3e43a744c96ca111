from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.dropout import pass_spread, train_val_runs
from engine.training.corpus import load_corpus
from engine.training.dropout import config_dropout
from engine.training.lab import RunConfig
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.dropout import spread
from ui.inputs import stop_if_empty
from ui.layout import metric_row
from ui.sampling import chart_label, token_texts
from ui.text import escape_markdown
from ui.training import follow_training, training_job

DEFAULT_PROMPT = "The capital of France is"
RATES = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
RUN_RATES = [0.1, 0.2, 0.3, 0.5]
DECAYS = [0.0, 0.1, 0.3, 1.0]
STEPS = [50, 150, 400, 800]
CORPUS_SIZES = [1000, 2000, 4000, 8000]
SHOWN = 10   # candidate tokens on the chart


def pick(value, options, default):
    return value if value in options else default


def show_runs(names: list[str], runs: list, chars: int) -> None:
    """Both finished runs: their final losses and gaps, and their train and validation curves together."""
    slots = metric_row(4)
    for i, (name, run) in enumerate(zip(names, runs)):
        last = run.last
        slots[2 * i].metric(f"Run {i + 1}, {name}: validation", f"{last.val_loss:.3f}",
                            f"train {last.train_loss:.3f}", delta_color="off", delta_arrow="off")
        slots[2 * i + 1].metric(f"Run {i + 1}: validation − train gap", f"{last.val_loss - last.train_loss:+.3f}",
                                f"after {last.step:,} steps", delta_color="off", delta_arrow="off",
                                help="Measured on fixed windows without dropout. A wide gap = memorising.")
    show_chart(figure(train_val_runs, names, [[e.step for e in r.evals] for r in runs],
                      [[e.train_loss for e in r.evals] for r in runs], [[e.val_loss for e in r.evals] for r in runs],
                      title=f"Train vs validation loss on {chars:,} training characters"),
               partial(pd.DataFrame, [{"run": name, "step": e.step, "train_loss": e.train_loss, "val_loss": e.val_loss}
                                      for name, r in zip(names, runs) for e in r.evals]),
               name="dropout-overfitting", key="runs_chart")
    st.caption(f"Both runs saw the same {runs[0].train_chars:,} characters about "
               f"{runs[0].tokens_seen / runs[0].train_chars:,.0f} times. Regularization trades a higher training "
               "loss for a smaller gap; on a corpus this small neither run generalises well.")


with concept_page("dropout"):
    st.subheader("1 · Dropout switched on in SmolLM2, at inference", anchor=False)
    declared = config_dropout(lm())
    st.markdown("Dropout zeroes each unit with probability *p* and scales the rest by 1/(1−*p*). Here it hits the "
                "1,536 hidden units of the feed-forward layer in all 30 blocks, through a private traced pass (the "
                "shared model is not changed). SmolLM2's own config declares "
                + ", ".join(f"`{k}` = {v:g}" for k, v in declared.items())
                + ": it was trained with no dropout, so this shows the noise dropout adds, not a mode it knows.")
    prompt = prompt_input("prompt", DEFAULT_PROMPT, "Prompt", max_tokens=64)
    c1, c2 = st.columns(2)
    p = pick(c1.select_slider("Dropout rate p", RATES, value=0.1, key="p", bind="query-params",
                              help="The probability that each FFN hidden unit is zeroed in a pass. 0 = off."),
             RATES, 0.1)
    passes = int(pick(c2.select_slider("Repeated passes", list(range(2, 11)), value=6, key="passes",
                                       bind="query-params", help="Each pass draws its own dropout masks."),
                      list(range(2, 11)), 6))
    stop_if_empty(prompt, "Type a prompt above to see its next-token distribution with and without dropout.")
    result = spread(prompt, p, passes, 0)
    order = np.argsort(-result.clean)[:SHOWN]
    labels = [chart_label(t) for t in token_texts(tuple(int(i) for i in order))]
    tops = token_texts(tuple(int(i) for i in result.top_choices))
    identical = bool(np.all(result.probs == result.probs[0]))
    a, b, c = metric_row(3)
    a.metric("Passes identical?", "yes" if identical else "no", f"{passes} passes at p = {p:g}", delta_color="off",
             delta_arrow="off", help="Whether every pass gave exactly the same probabilities (bit for bit).")
    b.metric("Largest probability spread", f"{result.max_spread:.3f}", "max − min over passes",
             delta_color="off", delta_arrow="off")
    c.metric("Different top tokens", f"{len(set(tops))}", f"of {passes} passes", delta_color="off",
             delta_arrow="off", help="How many distinct most-likely next tokens the passes chose.")
    show_chart(figure(pass_spread, labels, result.probs[:, order], result.clean[order],
                      title=f"Next-token probability in each of {passes} passes, p = {p:g}"),
               partial(pd.DataFrame, {"token": labels, "no_dropout": result.clean[order],
                                      **{f"pass_{i + 1}": result.probs[i, order] for i in range(passes)}}),
               name="dropout-passes", key="passes_chart")
    st.caption("Top choices of the passes: " + ", ".join(f"`{escape_markdown(chart_label(t))}`" for t in tops)
               + ". At training time this noise is the point: no unit can rely on any other being present. At "
               "inference dropout is switched off, so the model answers the same way every time.")

    st.subheader("2 · A baby GPT memorises a tiny corpus; dropout and weight decay hold it back", anchor=False)
    corpus = load_corpus()
    st.markdown("The baby GPT of the training lab trains twice on the same few characters of the fables, with the "
                "same seed and batches: once with no regularization, once with dropout (on its embeddings, "
                "attention weights and residual branches) and weight decay. Validation is fables it never sees.")
    c1, c2, c3, c4 = st.columns(4)
    rate = pick(c1.select_slider("Dropout (run 2)", RUN_RATES, value=0.2, key="rate", bind="query-params"),
                RUN_RATES, 0.2)
    decay = pick(c2.select_slider("Weight decay (run 2)", DECAYS, value=0.1, key="decay", bind="query-params",
                                  help="AdamW's decoupled decay: every step shrinks each weight matrix a little."),
                 DECAYS, 0.1)
    chars = pick(c3.select_slider("Training characters", CORPUS_SIZES, value=2000, key="chars",
                                  bind="query-params", help="Only the first N characters of the training split."),
                 CORPUS_SIZES, 2000)
    steps = pick(c4.select_slider("Steps", STEPS, value=400, key="steps", bind="query-params",
                                  help="Optimizer steps of 16 windows of 64 characters."), STEPS, 400)
    plain_run = RunConfig(steps=int(steps), train_chars=int(chars), weight_decay=0.0, dropout=0.0)
    regular = replace(plain_run, weight_decay=float(decay), dropout=float(rate))
    names = ["no regularization", f"dropout {rate:g} + decay {decay:g}"]
    runs = None
    if not st.toggle("Train both live", value=True, key="train", bind="query-params",
                     help="Two runs of up to a minute each on this shared CPU; results are kept for the link."):
        st.info("Switch on **Train both live** to train the two baby GPTs.", icon=":material/model_training:")
    else:   # no st.stop() while they run: the quiz and related links below the demo must still be drawn
        runs = [follow_training(training_job(cfg), corpus.uniform_loss, chart_key=f"run{i}")
                for i, cfg in enumerate((plain_run, regular))]
    if runs and all(r is not None for r in runs):
        show_runs(names, runs, chars)
