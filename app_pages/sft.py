from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.lora import loss_per_step
from charts.sft import token_losses
from engine.tokens.offsets import visible
from engine.training.sft import IGNORE
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import accept_url_alias, stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.sft import MAX_PAIRS, labelled_chat, parse_pairs, sft_job

PAIRS_KEY = "pairs"
DEFAULT_PAIRS = ("What is the capital of Vorlandia? | The capital of Vorlandia is Zell.\n"
                 "Who rules Vorlandia? | King Tavik rules Vorlandia.")
MODE_NAMES = {"mask-prompt": "Mask the prompt (usual SFT)", "everything": "Train on every token",
              "drop-end": "Mask the prompt and the end-of-turn token"}
RATES = [3e-5, 1e-4, 3e-4, 1e-3]
AGAIN_FLAG = "_sft_train_again"


def train_again() -> None:
    st.session_state[AGAIN_FLAG] = True


def sft_demo() -> None:
    pairs_text = prompt_input(PAIRS_KEY, DEFAULT_PAIRS, f"Training pairs (one per line: question | answer; up to "
                              f"{MAX_PAIRS})", height=90, max_chars=600, max_tokens=160)
    pairs, skipped = parse_pairs(pairs_text)
    stop_if_empty(" ".join(q for q, _ in pairs), "Write a pair such as *What is the capital of Vorlandia? | The "
                  "capital of Vorlandia is Zell.* (the question, a bar, then the answer you want the model to give).")
    if skipped:
        st.caption(f":material/info: {skipped} line(s) skipped: each needs a question, a | and an answer.")
    accept_url_alias("mode", MODE_NAMES)   # ?mode=drop-end as well as the option's full name
    mode_name = st.radio("Which tokens get a label", list(MODE_NAMES.values()), key="mode", bind="query-params",
                         horizontal=True, help="A label of -100 means: no loss at this position. The usual SFT recipe "
                    "masks the prompt, so the model learns to answer, not to write questions.")
    mode = next(m for m, name in MODE_NAMES.items() if name == mode_name)

    user, answer = pairs[0]
    chat = labelled_chat(user, answer, mode)
    labels = np.array(chat["labels"][1:])
    trained = labels != IGNORE
    pieces = [visible(p) for p in chat["pieces"][1:]]
    m = metric_row(4)
    m[0].metric("Tokens in the chat", f"{len(chat['ids'])}", help="The first pair, rendered with SmolLM2's own chat "
                "template (which adds its default system prompt).")
    m[1].metric("Tokens with a label", f"{int(trained.sum())}", help=f"The other {int((~trained).sum()) + 1} carry "
                "-100 (the first token is never predicted).")
    m[2].metric("SFT loss (our mean)", f"{chat['ours']:.4f} nats")
    m[3].metric("transformers' loss", f"{chat['theirs']:.4f} nats",
                help="model(input_ids, labels=labels).loss with the same labels; it skips -100 itself. The page's "
                     "own number is the mean of the per-token losses over the labelled tokens only.")
    show_chart(figure(token_losses, pieces, chat["losses"], trained.tolist(),
                      title="Loss at every token of the first chat (blue bars count, grey are -100)"),
               partial(pd.DataFrame, {"position": range(1, len(pieces) + 1), "token": pieces,
                                      "label": labels, "loss_nats": chat["losses"]}),
               name=f"sft-token-loss-{mode}", key="tokens_chart")
    st.caption(f"The template's prompt ends after token {chat['prompt_len']} (the assistant header); the answer's "
               f"end-of-turn token is token {chat['end_index'] + 1}.")
    with st.expander("The label row, token by token"):
        st.dataframe(pd.DataFrame({"token": [visible(p) for p in chat["pieces"]], "id": chat["ids"],
                                   "label": chat["labels"]}), hide_index=True, height=260)

    c1, c2 = st.columns(2)
    steps = c1.slider("SFT steps", 1, 20, 8, key="steps", bind="query-params",
                      help="Adam steps on every weight of a private copy of the last block, all pairs at once.")
    lr = c2.select_slider("Learning rate", RATES, value=3e-4, key="lr", bind="query-params",
                          format_func=lambda v: f"{v:g}")
    run_it = st.toggle("Run the SFT steps", value=False, key="train", bind="query-params",
                       help="Trains on the server; usually a few seconds to half a minute on this CPU.")
    if not run_it:
        st.info(f"Switch on **Run the SFT steps** to train the last block on these {len(pairs)} pair(s) with the "
                "labels above, and see the loss per token and the end-of-turn probability change.",
                icon=":material/school:")
        return
    run = follow(sft_job(pairs, mode, steps, lr, again=st.session_state.pop(AGAIN_FLAG, False)), what="SFT run")
    if run is None:
        return
    after = run.token_losses_after
    m = metric_row(3)
    m[0].metric("Labelled loss after", f"{float(after[trained].mean()):.4f} nats",
                f"{float(after[trained].mean()) - chat['ours']:+.4f} from before", delta_color="inverse",
                help="The first chat, recomputed with the trained block.")
    m[1].metric("End-of-turn probability", f"{100 * run.end_prob_after:.1f}%",
                f"{100 * (run.end_prob_after - run.end_prob_before):+.1f} points from "
                f"{100 * run.end_prob_before:.1f}%",
                delta_color="off",
                help="The probability that the model closes its turn right after the answer. Masking the end-of-turn "
                     "token leaves it untrained, so the model does not learn to stop.")
    m[2].metric("Trained parameters", f"{run.trained_parameters:,}", help=f"The last block and the final norm "
                f"(copies); {run.steps_done} steps in {run.seconds:.1f} s.")
    show_chart(figure(token_losses, pieces, chat["losses"], trained.tolist(), after,
                      title="Loss at every token, before (bars) and after (diamonds) the SFT steps"),
               partial(pd.DataFrame, {"position": range(1, len(pieces) + 1), "token": pieces, "label": labels,
                                      "loss_before": chat["losses"], "loss_after": after}),
               name=f"sft-token-loss-after-{mode}", key="after_chart")
    show_chart(figure(loss_per_step, run.losses, title="Loss on the labelled tokens at each step",
                      y_title="mean loss on the labelled tokens (nats)"),
               partial(pd.DataFrame, {"step": np.arange(1, run.steps_done + 1), "loss": run.losses}),
               name="sft-loss", key="loss_chart")
    st.button("Train again", key="again", icon=":material/refresh:", on_click=train_again)


with concept_page("sft"):
    sft_demo()
