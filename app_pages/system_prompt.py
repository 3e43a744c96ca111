from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.chat import divergence_along, role_chips, side_by_side
from engine.using.chat_template import remove_special_tokens
from engine.decoding.divergence import js_divergence_bits, kl_divergence_bits
from engine.tokens.offsets import decode, decode_each, visible
from ui import concept_page, lm, prompt_input
from ui.cached import next_token
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.system_prompt import answers_job, rendered_chat

SYSTEM_PRESETS = {"Empty (template default)": "", "French": "Always answer in French.",
                  "Pirate": "You are a pirate. Always talk like a pirate.", "One word": "Answer with one word only.",
                  "Yes or no": "Only answer yes or no."}
USER_PRESETS = ["What colour is the sky?", "What is the capital of France?",
                "Reply in English please: what colour is the sky?", "Tell me a joke."]
PART_NAMES = {"special": "special token", "header": "role header", "content": "message text",
              "separator": "newline between turns"}
NAMES = ("system prompt A", "system prompt B")


def put(key: str, text: str) -> None:
    st.session_state[key] = text


def presets(key: str, options: dict[str, str]) -> None:
    with st.container(horizontal=True, gap="small"):
        for i, (name, text) in enumerate(options.items()):
            st.button(name, key=f"preset-{key}-{i}", on_click=put, args=(key, text), width="content",
                      help=repr(text) if text else "Leaves the box empty: the template then writes its own.")


def cleaned(text: str, what: str) -> str:
    text, removed = remove_special_tokens(lm(), text)
    if removed:
        st.caption(f":material/shield: Special-token spellings were removed from the {what}: typed into a message, "
                   "'<|im_end|>' would become the real end-of-turn token and let the writer forge a new turn.")
    return text


with concept_page("system-prompt"):
    user = cleaned(prompt_input("user", USER_PRESETS[0], "User message", max_chars=600, max_tokens=120), "user message")
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Try:", width="content")
        for i, text in enumerate(USER_PRESETS):
            st.button(text, key=f"preset-user-{i}", on_click=put, args=("user", text), width="content")
    col_a, col_b = st.columns(2, gap="medium")
    with col_a:
        system_a = cleaned(prompt_input("sys_a", "", "System prompt A", max_chars=600, max_tokens=120, height=90,
                                        help="Empty: no system turn is sent, and SmolLM2's template then writes "
                                             "its own default system prompt."), "system prompt A")
        presets("sys_a", SYSTEM_PRESETS)
    with col_b:
        system_b = cleaned(prompt_input("sys_b", SYSTEM_PRESETS["French"], "System prompt B", max_chars=600,
                                        max_tokens=120, height=90), "system prompt B")
        presets("sys_b", SYSTEM_PRESETS)
    stop_if_empty(user, "Type a user message above, or pick one: the page then shows the chat as the model reads "
                        "it under both system prompts and compares what the model would say.")
    chats = {"A": rendered_chat(system_a, user), "B": rendered_chat(system_b, user)}

    st.subheader("1 · The chat as the model reads it", anchor=False)
    shown = st.segmented_control("Show the chat under system prompt", ["A", "B"], default="A", key="show",
                                 bind="query-params") or "A"
    chat = chats[shown]
    special = chat.count(part="special")
    markup = special + chat.count(part="header") + chat.count(part="separator")
    m = metric_row(4)
    m[0].metric("Tokens the model reads", f"{len(chat.tokens)}", help="Everything before the answer: the "
                "assistant's turn is already opened, so the next token is the first word of the reply.")
    m[1].metric("System turn", f"{chat.count('system')} tokens",
                "the template's default" if chat.default_system else "your system prompt", delta_color="off",
                delta_arrow="off", help="Markers included. With an empty box SmolLM2's template inserts its own "
                                        "system prompt: a chat never reaches this model without one.")
    m[2].metric("Your message", f"{chat.count('user', 'content')} tokens", help="The user's text alone.")
    m[3].metric("Template markup", f"{markup} tokens", f"{special} special", delta_color="off", delta_arrow="off",
                help="<|im_start|> and <|im_end|> (single special tokens), the role names and the newlines.")
    turns = []
    for turn in chat.turns:
        tokens = [(t.id, t.label, t.role, t.part, f"token {n + 1}, id {t.id}\nturn: {t.role}\n{PART_NAMES[t.part]}"
                   + ("\nonly part of a character (its bytes in hex)" if t.partial else ""))
                  for n, t in enumerate(chat.tokens) if turn.start <= t.start < turn.end]
        label = f"{turn.role} (default)" if turn.role == "system" and chat.default_system else turn.role
        turns.append((label, tokens))
    show_chart(figure(role_chips, turns, title=f"{len(chat.tokens)} tokens under system prompt {shown}"),
               partial(pd.DataFrame, {"position": range(1, len(chat.tokens) + 1), "token_id": chat.ids,
                                      "text": [t.text for t in chat.tokens], "role": [t.role for t in chat.tokens],
                                      "part": [t.part for t in chat.tokens]}),
               name=f"chat-template-{shown}", key="template_chart")
    with st.expander("The same chat as text (what `apply_chat_template` returns)"):
        st.code(chat.text, language=None, wrap_lines=True)
    st.caption("One row per turn; hover a token for its position and id. Roles are not a separate input: they are "
               "ordinary tokens in one stream. `<|im_start|>` (id "
               f"{chat.tokens[0].id}) opens a turn, the role's name and a newline follow, and `<|im_end|>` closes it; "
               "the model learned in fine-tuning to treat text after 'system' as standing instructions.")

    st.subheader("2 · The first token of the answer, under A and under B", anchor=False)
    top_n = st.slider("Tokens shown per prompt", 5, 20, 10, key="top", bind="query-params",
                      help="Each panel lists one prompt's most likely first tokens; the rings show the other "
                           "prompt's probability for the same tokens. The divergences use all 49,152 tokens.")
    dist_a, dist_b = next_token(chats["A"].text), next_token(chats["B"].text)
    pa, pb = dist_a.probabilities, dist_b.probabilities
    js, kl_ab, kl_ba = js_divergence_bits(pa, pb), kl_divergence_bits(pa, pb), kl_divergence_bits(pb, pa)
    top_a, top_b = int(np.argmax(pa)), int(np.argmax(pb))
    m = metric_row(4)
    m[0].metric("JS divergence", f"{js:.4f} bits", help="Jensen-Shannon divergence of the two next-token "
                "distributions: 0 when identical, 1 bit when they share no token at all. Symmetric.")
    m[1].metric("KL(A ‖ B)", f"{kl_ab:.4f} bits", help="Extra bits per token for expecting B's distribution when "
                "A's is the truth. Not symmetric: compare with the next one.")
    m[2].metric("KL(B ‖ A)", f"{kl_ba:.4f} bits")
    m[3].metric("Top first token", f"{visible(decode(lm(), [top_a]))} / {visible(decode(lm(), [top_b]))}",
                "same under both" if top_a == top_b else "differs", delta_color="off", delta_arrow="off",
                help="The most likely first token under A, then under B.")
    panels = []
    for name, own, other in (("A", pa, pb), ("B", pb, pa)):
        order = [int(i) for i in np.argsort(-own, kind="stable")[:top_n]]
        labels = [visible(t) for t in decode_each(lm(), order)]
        panels.append((f"Under system prompt {name}", labels, order, own[order], other[order]))
    either = [int(i) for i in np.union1d(panels[0][2], panels[1][2])]
    show_chart(figure(side_by_side, panels, NAMES, title="The first token of the answer: top tokens side by side"),
               partial(pd.DataFrame, {"token_id": either, "token": decode_each(lm(), either),
                                      "p_under_A": pa[either], "p_under_B": pb[either]}),
               name="system-prompt-first-token", key="first_token_chart")

    st.subheader("3 · Greedy answers, and where the two prompts part", anchor=False)
    c1, c2 = st.columns([1, 1])
    n_new = c1.slider("Answer length (tokens, at most)", 8, 64, 32, 8, key="n", bind="query-params",
                      help="Greedy: always the most likely token. An answer stops early at <|im_end|>.")
    follow_which = c2.segmented_control("Follow the answer written under system prompt", ["A", "B"], default="A",
                                        key="follow", bind="query-params") or "A"
    result = follow(answers_job(chats["A"].text, chats["B"].text, n_new), what="pair of greedy answers")
    if result is not None:
        a_col, b_col = st.columns(2)
        for col, name, ids, stopped in ((a_col, "A", result.first_answer, result.first_stopped),
                                        (b_col, "B", result.second_answer, result.second_stopped)):
            with col.container(border=True):
                st.caption(f"Under system prompt {name} · {len(ids)} tokens" + (" · ended its turn" if stopped else
                                                                                " · cut at the length limit"))
                st.text(decode(lm(), [i for i in ids if i != lm().tokenizer.eos_token_id]).strip() or "(empty)")
        trace = result.along_first if follow_which == "A" else result.along_second
        labels = [visible(t) for t in decode_each(lm(), list(trace.continuation))]
        m = metric_row(3)
        m[0].metric("Mean JS along the answer", f"{float(np.mean(trace.js_bits)):.3f} bits",
                    help="Averaged over the answer's positions: how differently the two prompts predict it.")
        m[1].metric("Largest JS", f"{float(np.max(trace.js_bits)):.3f} bits",
                    f"at token {int(np.argmax(trace.js_bits)) + 1}: {labels[int(np.argmax(trace.js_bits))]}",
                    delta_color="off", delta_arrow="off")
        ratio = float(np.sum(np.log2(trace.p_first) - np.log2(trace.p_second)))
        m[2].metric("Answer's probability ratio", f"{ratio:+.1f} bits",
                    help="log2 p(answer | A) − log2 p(answer | B), summed over its tokens: positive means prompt A "
                         "makes this exact answer likelier.")
        show_chart(figure(divergence_along, labels, trace.p_first, trace.p_second, trace.js_bits, NAMES,
                          title=f"The answer written under {follow_which}, predicted under both prompts"),
                   partial(pd.DataFrame, {"position": range(1, len(labels) + 1), "token_id": trace.continuation,
                                          "token": labels, "p_under_A": trace.p_first, "p_under_B": trace.p_second,
                                          "js_bits": trace.js_bits, "kl_A_to_B_bits": trace.kl_bits}),
                   name=f"system-prompt-divergence-{follow_which}", key="divergence_chart")
        st.caption("Teacher forcing: the same answer tokens are fed after each chat, and at every position the two "
                   "next-token distributions are compared. Where the lines part, the system prompt is steering. A "
                   "135M model follows simple instructions (a language, a persona) loosely and ignores harder ones "
                   "(one word, yes or no) more often than it obeys them.")
