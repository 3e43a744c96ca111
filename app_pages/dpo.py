from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.lora import loss_per_step
from charts.preferences import logprob_steps, token_rewards
from engine.training.dpo import LN2, MAX_PAIRS, dpo_loss
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.dpo import TRAINED_BLOCKS, dpo_job, parse_triples, reference_view
from ui.text import escape_markdown

DEFAULT_TRIPLES = ("What is the capital of France? | The capital of France is Paris. | France is a country in Europe "
                   "and it has many cities.\n"
                   "Give me one tip for sleeping better. | Keep a regular bedtime and avoid screens for an hour before "
                   "sleep. | Sleep is important. Sleep is important for everyone.")
BETAS = [0.01, 0.05, 0.1, 0.3, 0.5, 1.0]
RATES = [3e-5, 1e-4, 3e-4]
AGAIN_FLAG = "_dpo_train_again"


def train_again() -> None:
    st.session_state[AGAIN_FLAG] = True


def pair_table(triples, run) -> pd.DataFrame:
    c, r = run.chosen_logprobs, run.rejected_logprobs
    return pd.DataFrame({
        "pair": range(1, len(triples) + 1),
        "log π(chosen)": c[-1], "log π_ref(chosen)": c[0], "log π(rejected)": r[-1], "log π_ref(rejected)": r[0],
        "chosen margin": c[-1] - c[0], "rejected margin": r[-1] - r[0], "DPO loss": run.pair_losses()})


def dpo_demo() -> None:
    text = prompt_input("pairs", DEFAULT_TRIPLES, f"Preference pairs (one per line: prompt | chosen | rejected; up to "
                        f"{MAX_PAIRS})", height=110, max_chars=900, max_tokens=240)
    triples, skipped = parse_triples(text)
    stop_if_empty(" ".join(t[0] for t in triples), "Write a line such as *What is 2 + 2? | 2 + 2 is 4. | I like "
                  "turtles.*: the prompt, the answer you prefer, and the one you reject, separated by bars.")
    if skipped:
        st.caption(f":material/info: {skipped} line(s) skipped: each needs a prompt, a chosen and a different "
                   "rejected answer, separated by two bars.")
    beta = st.select_slider("β (how far the policy may move from the reference)", BETAS, value=0.1, key="beta",
                            bind="query-params", help="DPO's β plays the part of RLHF's KL weight: a small β lets "
                            "the policy drift far for a small gain in loss; a large β keeps it close.")

    st.subheader("1 · Step 0: the policy is the reference", anchor=False)
    views = [reference_view(*t) for t in triples]
    v = views[0]
    ref_c, ref_r = float(v["chosen"]["logprobs"].sum()), float(v["rejected"]["logprobs"].sum())
    m = metric_row(3)
    m[0].metric("log π_ref(chosen), pair 1", f"{ref_c:.3f} nats", help="The sum over the answer's tokens (including "
                "<|im_end|>) of ln p(token | the chat so far), from SmolLM2 itself.")
    m[1].metric("log π_ref(rejected), pair 1", f"{ref_r:.3f} nats")
    m[2].metric("DPO loss at step 0", f"{dpo_loss(ref_c, ref_c, ref_r, ref_r, beta):.4f}",
                f"ln 2 = {LN2:.4f}", delta_color="off", delta_arrow="off",
                help="The policy starts as an exact copy of the reference, so both margins are 0 and the loss is "
                     "-ln sigmoid(0) = ln 2, whatever β and whichever answers.")
    rows = [v[name]["tokens"] for v in views for name in ("chosen", "rejected")]
    values = [v[name]["logprobs"] for v in views for name in ("chosen", "rejected")]
    names = [f"pair {i + 1} · {name}" for i in range(len(views)) for name in ("chosen", "rejected")]
    show_chart(figure(token_rewards, rows, values, names, title="Reference log p of every answer token (nats)",
                      height=120 + 46 * len(rows), signed=False, value_name="log p"),
               partial(pd.DataFrame, {"answer": [n for n, r in zip(names, rows) for _ in r],
                                      "token": [t for r in rows for t in r],
                                      "log_prob_ref": np.concatenate(values)}), name="dpo-reference", key="ref_chart")
    st.caption("Yellow tokens are ones the reference expected, dark ones surprised it. Before any step the implicit "
               "reward β (log π − log π_ref) of every token is exactly 0; the steps below change these numbers.")

    st.subheader("2 · A few DPO steps on the top of the model", anchor=False)
    c1, c2 = st.columns(2)
    steps = c1.slider("DPO steps", 1, 20, 8, key="steps", bind="query-params",
                      help=f"Adam steps on a private copy of the top {TRAINED_BLOCKS} blocks, all pairs at once.")
    lr = c2.select_slider("Learning rate", RATES, value=3e-4, key="lr", bind="query-params",
                          format_func=lambda x: f"{x:g}")
    if not st.toggle("Run the DPO steps", value=True, key="train", bind="query-params",
                     help="Trains on the server; usually 10-40 s on this shared CPU."):
        st.info("Switch on **Run the DPO steps** to train and watch the log-probabilities and the implicit rewards "
                "move.", icon=":material/school:")
        return
    run = follow(dpo_job(triples, beta, steps, lr, again=st.session_state.pop(AGAIN_FLAG, False)), what="DPO run")
    if run is None:
        return
    table = pair_table(triples, run)
    m = metric_row(3)
    m[0].metric(f"DPO loss after {run.steps_done} steps", f"{run.losses[-1]:.4f}",
                f"{run.losses[-1] - LN2:+.4f} from ln 2", delta_color="inverse",
                help="The mean over the pairs of -ln sigmoid(β (chosen margin - rejected margin)).")
    m[1].metric("Reward accuracy", f"{int((table['chosen margin'] > table['rejected margin']).sum())} of "
                f"{len(table)}", help="Pairs whose chosen answer now has the higher implicit reward.")
    m[2].metric("Trained parameters", f"{run.trained_parameters:,}", help=f"The top {run.blocks} blocks and the final "
                f"norm (private copies); {run.steps_done} steps in {run.seconds:.1f} s.")
    st.dataframe(table, hide_index=True, column_config={k: st.column_config.NumberColumn(format="%.4f")
                                                        for k in table.columns[1:]})
    shown = st.segmented_control("Pair shown below", list(range(1, len(triples) + 1)), default=1, key="shown",
                                 bind="query-params") or 1
    i = min(max(int(shown), 1), len(triples)) - 1
    chosen, rejected = run.chosen_logprobs[:, i], run.rejected_logprobs[:, i]
    show_chart(figure(logprob_steps, chosen, rejected, title=f"Pair {i + 1}: log p of each answer, step by step"),
               partial(pd.DataFrame, {"step": range(len(chosen)), "log_p_chosen": chosen, "log_p_rejected": rejected}),
               name=f"dpo-logprobs-pair-{i + 1}", key="steps_chart")
    if chosen[-1] < chosen[0]:
        st.warning(f"**Both fell.** The chosen answer's log-probability dropped too ({chosen[0]:.2f} → "
                   f"{chosen[-1]:.2f} nats), just less than the rejected one's ({rejected[0]:.2f} → "
                   f"{rejected[-1]:.2f}). DPO only asks for the *gap* to grow, so it can be met by pushing both down. "
                   "A trainer's 'rewards/chosen' going negative means exactly this.", icon=":material/trending_down:")
    else:
        st.caption(f"Here the chosen answer rose ({chosen[0]:.2f} → {chosen[-1]:.2f} nats) while the rejected one "
                   f"went from {rejected[0]:.2f} to {rejected[-1]:.2f}. DPO constrains only the gap, so both may fall; "
                   "try a larger learning rate or more steps.")
    rewards = [beta * (run.chosen_tokens_after[i] - run.chosen_tokens_ref[i]),
               beta * (run.rejected_tokens_after[i] - run.rejected_tokens_ref[i])]
    pieces = [views[i]["chosen"]["tokens"], views[i]["rejected"]["tokens"]]
    show_chart(figure(token_rewards, pieces, rewards, ["chosen", "rejected"],
                      title=f"Pair {i + 1}: implicit reward per token, β = {beta:g}"),
               partial(pd.DataFrame, {"answer": ["chosen"] * len(pieces[0]) + ["rejected"] * len(pieces[1]),
                                      "token": pieces[0] + pieces[1], "implicit_reward": np.concatenate(rewards)}),
               name=f"dpo-token-rewards-pair-{i + 1}", key="reward_chart")
    st.caption(f"Red: the token got more likely than under the reference; blue: less likely. Each answer's implicit "
               f"reward β (log π − log π_ref) is the sum of its row: {rewards[0].sum():+.4f} for the chosen answer "
               f"and {rewards[1].sum():+.4f} for the rejected one. The tokens with the strongest colour carry the "
               f"preference: {escape_markdown(triples[i][1])} vs {escape_markdown(triples[i][2])}")
    show_chart(figure(loss_per_step, run.losses[1:], title="Mean DPO loss after each step",
                      y_title="DPO loss"),
               partial(pd.DataFrame, {"step": range(len(run.losses)), "loss": run.losses}), name="dpo-loss",
               key="loss_chart")
    st.button("Train again", key="again", icon=":material/refresh:", on_click=train_again)


with concept_page("dpo"):
    dpo_demo()
