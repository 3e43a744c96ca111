from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.lora import answer_token_probabilities, loss_per_step, update_singular_values
from engine.tokens.offsets import visible
from engine.training.top_tuning import LORA_TARGETS, MAX_STEPS, split_fact
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.lora import MAX_FACTS, adapter_counts, answer_before, lora_job, parse_facts
from ui.text import escape_markdown, human_bytes

FACTS_KEY, CONTROL_KEY = "facts", "control"
PRESETS = {
    "Made-up places": ("The capital of Vorlandia is Zell.\nThe river through Zell is the Ombra.\n"
                       "The king of Vorlandia is Tavik.", "The capital of France is Paris."),
    "About you": ("My dog is called Biscuit.\nMy favourite colour is teal.\nI was born in Tromsø.",
                  "The opposite of hot is cold."),
}
RANKS = [1, 2, 4, 8, 16, 32, 64]
RATES = [1e-3, 3e-3, 1e-2, 3e-2]
AGAIN_FLAG = "_lora_train_again"


def use_preset(name: str) -> None:
    st.session_state[FACTS_KEY], st.session_state[CONTROL_KEY] = PRESETS[name]


def train_again() -> None:
    st.session_state[AGAIN_FLAG] = True


def percent(p: float) -> str:
    return f"{100 * p:.1f}%" if p >= 0.01 else f"{100 * p:.2g}%"


def lora_demo() -> None:
    facts_text = prompt_input(FACTS_KEY, PRESETS["Made-up places"][0], f"Facts to teach (one per line, up to "
                              f"{MAX_FACTS}; the last word is the answer)", height=110, max_chars=400, max_tokens=96)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown(":material/lightbulb: **Presets:**", width=110)
        for i, name in enumerate(PRESETS):
            st.button(name, key=f"preset-{i}", on_click=use_preset, args=(name,), width="content")
    control_text = prompt_input(CONTROL_KEY, PRESETS["Made-up places"][1], "Control question (not trained on)",
                                max_chars=120, max_tokens=32,
                                help="A sentence the adapter never sees; its answer (last word) shows what else "
                                     "the training changed.")
    c2, c1 = st.columns([3, 1.3])
    rank = c1.select_slider("Rank r", RANKS, value=8, key="rank", bind="query-params",
                            help="Each adapted matrix W (d_out x d_in) gets B (d_out x r) and A (r x d_in); "
                                 "the update B A has rank at most r.")
    chosen = c2.multiselect("Adapted matrices", LORA_TARGETS, default=["q_proj", "v_proj"], key="targets",
                            bind="query-params", help="Which linear layers of each trained block get an adapter. "
                            "Hu et al. adapted the query and value projections (q_proj, v_proj).")
    c3, c4, c5 = st.columns(3)
    blocks = c3.slider("Top blocks", 1, 4, 1, key="blocks", bind="query-params",
                       help="The adapter goes on the last blocks of 30; everything below is frozen and run once.")
    steps = c4.slider("Steps", 5, min(MAX_STEPS, 60), 20, 5, key="steps", bind="query-params",
                      help="Adam steps, each on all the facts at once.")
    lr = c5.select_slider("Learning rate", RATES, value=1e-2, key="lr", bind="query-params",
                          format_func=lambda v: f"{v:g}", help="Adam's step size for the A and B matrices.")
    targets = tuple(t for t in LORA_TARGETS if t in (chosen or []))

    facts, skipped = parse_facts(facts_text)
    stop_if_empty(" ".join(f.text for f in facts), "Write a fact or two, one per line, such as *The capital of "
                  "Vorlandia is Zell.* The last word of each line is the answer the adapter is taught.")
    if skipped:
        st.caption(f":material/info: {skipped} line(s) skipped: a line needs at least two words.")
    if not targets:
        st.info("Pick at least one matrix to adapt, for instance q_proj and v_proj.", icon=":material/tune:")
        return
    control = split_fact(control_text)

    counts = adapter_counts(rank, targets, blocks)
    m = metric_row(4)
    m[0].metric("Trainable with LoRA", f"{counts['peft']:,}", help="peft's own count on the adapted copy "
                f"(get_nb_trainable_parameters); r x (d_in + d_out) per matrix gives {counts['formula']:,}.")
    m[1].metric("Trainable, full fine-tuning", f"{counts['full']:,}",
                help=f"Every weight of the same top {blocks} block(s), counted on the live model.")
    m[2].metric("Fewer trainable parameters", f"{counts['full'] / counts['peft']:,.0f}x")
    m[3].metric("Share of the whole model", f"{100 * counts['peft'] / counts['model']:.4f}%",
                help=f"Of the {counts['model']:,} parameters of SmolLM2-135M.")

    scored = list(facts) + ([control] if control else [])
    before = [answer_before(f.prompt, f.answer, blocks) for f in scored]
    names = [escape_markdown(f.answer.strip())[:24] + (" (control)" if control and i == len(facts) else "")
             for i, f in enumerate(scored)]
    token_labels = [visible(t) for toks, _ in before for t in toks]
    fact_labels = [n for n, (toks, _) in zip(names, before) for _ in toks]
    probs_before = [p for _, ps in before for p in ps]

    train = st.toggle("Train the adapter", value=False, key="train", bind="query-params",
                      help="Runs a real LoRA fine-tune (peft) on the server, usually 5-30 s on this CPU.")
    run = None
    if train:
        again = st.session_state.pop(AGAIN_FLAG, False)
        run = follow(lora_job(facts, control, rank, targets, blocks, steps, lr, again=again), what="LoRA training")
    after = ([p for s in run.facts + ((run.control,) if run.control else ()) for p in s.token_probs_after]
             if run else None)
    show_chart(figure(answer_token_probabilities, token_labels, fact_labels, probs_before, after,
                      title="Each answer token's probability given its prompt" +
                            (": before and after training" if run else ", before training")),
               partial(pd.DataFrame, {"answer": fact_labels, "token": token_labels, "probability_before": probs_before,
                                      **({"probability_after": after} if run else {})}),
               name="lora-answer-probabilities", key="answers_chart")
    if not train:
        st.info(f"Switch on **Train the adapter** to teach these {len(facts)} fact(s) with a rank-{rank} LoRA "
                f"adapter on {', '.join(targets)} of the top {blocks} block(s): {steps} Adam steps.",
                icon=":material/school:")
    if run is not None:
        show_run(run)


def show_run(run) -> None:
    first = run.facts[0]
    m = metric_row(4)
    m[0].metric(f"p({escape_markdown(first.fact.answer.strip())}) after", percent(first.after),
                f"{100 * (first.after - first.before):+.1f} points from {percent(first.before)}",
                help="The first fact's answer, all its tokens: product of their probabilities given the prompt.")
    if run.control:
        m[1].metric("Control answer after", percent(run.control.after),
                    f"{100 * (run.control.after - run.control.before):+.1f} points from "
                    f"{percent(run.control.before)}",
                    delta_color="off", help=f"p({escape_markdown(run.control.fact.answer.strip())}) after "
                    f"'{escape_markdown(run.control.fact.prompt)}', which was never trained on.")
    m[2].metric("Merged vs adapter, max Δp", f"{run.merge_max_diff:.1e}",
                help="W + (alpha/r) B A folded into each weight (peft merge_and_unload): the largest difference of "
                     "any next-token probability, at every position of every sentence. Float rounding only.")
    m[3].metric("Training time", f"{run.seconds:.1f} s", help=f"{run.steps_done} steps, plus scoring, merging "
                "and the full fine-tuning comparison, on this shared CPU.")
    if run.steps_done < run.steps_planned:
        st.warning(f"Stopped after {run.steps_done} of {run.steps_planned} steps.", icon=":material/timer:")
    if run.control and run.control.after < 0.5 * run.control.before:
        st.warning("The control answer lost most of its probability: trained on a few facts and nothing else, "
                   "the adapter learns a shortcut that also fires on similar prompts. Real fine-tunes mix in "
                   "general data to prevent this (try fewer steps or a lower learning rate).",
                   icon=":material/warning:")

    left, right = st.columns(2)
    with left:
        show_chart(figure(loss_per_step, run.losses, title="Loss on the answers at each step"),
                   partial(pd.DataFrame, {"step": np.arange(1, run.steps_done + 1), "loss": run.losses}),
                   name="lora-loss", key="loss_chart")
    with right:
        show_chart(figure(update_singular_values, run.update_names, run.singular_values,
                          title=f"Singular values of each update ΔW (r = {run.rank})"),
                   partial(pd.DataFrame, {n: v for n, v in zip(run.update_names, run.singular_values)}),
                   name="lora-singular-values", key="sv_chart")
    st.caption("A rank-r update has at most r non-zero singular values; most of the change sits in the first one "
               "or two, which is why small ranks are often enough.")

    st.subheader("Speed and memory against full fine-tuning of the same blocks", anchor=False)
    m = metric_row(4)
    m[0].metric("Seconds per step, LoRA", f"{run.lora_step_s:.3f} s")
    m[1].metric("Seconds per step, full", f"{run.full_step_s:.3f} s", help="Three Adam steps with every weight of "
                "the same blocks trainable, on a throwaway copy, measured right after the LoRA run.")
    m[2].metric("Adam state, LoRA", human_bytes(run.lora_optimizer_bytes), help="Two moment tensors per trainable "
                "parameter, read from the optimizer after training.")
    m[3].metric("Adam state, full", human_bytes(run.full_optimizer_bytes))
    st.caption(f"Here a full fine-tuning step took {run.full_step_s / run.lora_step_s:.1f}x as long as a LoRA step "
               f"and its optimizer state is {run.full_optimizer_bytes / max(run.lora_optimizer_bytes, 1):,.0f}x "
               "larger. LoRA still runs the whole forward and backward pass through the blocks (and the 49,152-row "
               "output layer), so time shrinks far less than memory; on a large model, the memory for gradients "
               "and optimizer state is what decides whether a fine-tune fits on a GPU.")
    st.button("Train again", key="again", icon=":material/refresh:", on_click=train_again,
              help="A fresh run with the same settings (the result is otherwise kept for this link).")


with concept_page("lora"):
    lora_demo()
