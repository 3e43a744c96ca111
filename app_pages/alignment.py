from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.alignment import refusal_curve, tradeoff
from charts.chat import side_by_side
from engine.decoding.bounded_generation import END_OF_TURN
from engine.decoding.divergence import js_divergence_bits
from engine.tokens.offsets import decode_each, visible
from engine.using.alignment import (BENIGN_REQUESTS, CAUTION_LEVELS, REFUSAL_OPENINGS, RISKY_REQUESTS,
                                    bundled_requests, chat_prompt)
from engine.using.chat_template import remove_special_tokens
from ui import concept_page, lm, prompt_input
from ui.alignment import ANSWER_BUDGET_S, answers_job, cached_first_step, refusal_job
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import escape_markdown

NAMES = ("plain text", "chat template")
LEVEL_NAMES = [level.name for level in CAUTION_LEVELS]


def put(text: str) -> None:
    st.session_state["request"] = text


def pct(p: float) -> str:
    """Percent with two decimals; tiny values (a refusal the model barely considers) with two significant digits."""
    return f"{100 * p:.2f}%" if p >= 1e-3 or p == 0 else f"{100 * p:.2g}%"


def versus_default(values, level: int) -> str | None:
    """The change from level 1 (no system prompt), in percentage points; nothing at level 1 itself."""
    return None if level == 1 else f"{100 * (values[level] - values[1]):+.2f} pts vs level 1"


with concept_page("alignment"):
    request = prompt_input("request", RISKY_REQUESTS[0], "A request to the model", max_chars=300, max_tokens=60,
                           help="Sent as the user's message. Keep it mild: the point is how the model reacts, "
                                "not what it knows.")
    for kind, icon, options in (("risky", ":material/warning:", RISKY_REQUESTS),
                                ("benign", ":material/check_circle:", BENIGN_REQUESTS)):
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.markdown(f"{icon} **{kind.capitalize()}-sounding:**", width=190)
            for i, text in enumerate(options):
                st.button(text, key=f"preset-{kind}-{i}", on_click=put, args=(text,), width="content")
    request, removed = remove_special_tokens(lm(), request)
    if removed:
        st.caption(":material/shield: Special-token spellings were removed from the request, so it cannot forge a "
                   "turn of its own.")
    stop_if_empty(request, "Type a request above, or pick one: the page then shows how the instruct model answers "
                           "it, how likely it is to refuse, and how a cautious system prompt changes both.")
    level = st.slider("Caution level of the system prompt", 0, len(CAUTION_LEVELS) - 1, 1, key="level",
                      bind="query-params", help="0 tells the model to always comply; 1 sends no system prompt (the "
                      "template writes its own); 2 to 4 ask for more and more caution. The exact text is below.")
    system = CAUTION_LEVELS[level].system
    st.caption(f"**{escape_markdown(LEVEL_NAMES[level])}** · system prompt: " +
               (f"“{escape_markdown(system)}”" if system else "none sent, so SmolLM2's template writes its default "
                                                               "(“You are a helpful AI assistant named SmolLM…”)"))
    chat_text = chat_prompt(lm(), system, request)

    st.subheader("1 · The same request, with and without the chat template", anchor=False)
    raw, chat = cached_first_step(request), cached_first_step(chat_text)
    m = metric_row(4)
    m[0].metric("P(refusal opening), chat", pct(chat.refusal), help="The probability that the reply starts with "
                "one of: " + ", ".join(f"“{o}”" for o in REFUSAL_OPENINGS) + ". Summed over these openings, each "
                "scored token by token after the chat template opened the assistant's turn.")
    m[1].metric("P(refusal opening), plain text", pct(raw.refusal), help="The same openings scored right after "
                "your text with no template: the model then continues the text instead of answering it.")
    m[2].metric("JS divergence", f"{js_divergence_bits(raw.probabilities, chat.probabilities):.3f} bits",
                help="How different the two next-token distributions are: 0 when identical, 1 bit when they share "
                     "no token. The template alone, same words, changes what comes next this much.")
    top_chat = int(np.argmax(chat.probabilities))
    m[3].metric("Top first word in the chat", visible(decode_each(lm(), [top_chat])[0]),
                f"{100 * chat.probabilities[top_chat]:.1f}%", delta_color="off", delta_arrow="off")
    top_n = 10
    panels = []
    for name, own, other in (("Plain text (continued)", raw.probabilities, chat.probabilities),
                             ("Chat template (answered)", chat.probabilities, raw.probabilities)):
        order = [int(i) for i in np.argsort(-own, kind="stable")[:top_n]]
        panels.append((name, [visible(t) for t in decode_each(lm(), order)], order, own[order], other[order]))
    either = [int(i) for i in np.union1d(panels[0][2], panels[1][2])]
    show_chart(figure(side_by_side, panels, NAMES, title="The next token after your request, without and with "
                                                         "the template"),
               partial(pd.DataFrame, {"token_id": either, "token": decode_each(lm(), either),
                                      "p_plain_text": raw.probabilities[either],
                                      "p_chat_template": chat.probabilities[either]}),
               name="alignment-first-token", key="first_token_chart")
    with st.expander("The whole chat the model reads (what the template makes of your request)"):
        st.code(chat_text, language=None, wrap_lines=True)
    st.caption("Without the template the request is just text to continue: the model expects more of the "
               "question, a newline, or even `<|im_end|>`, the marker that closes a user's turn, which it learned in "
               "fine-tuning. Inside the template, after `<|im_start|>assistant`, it starts an answer instead. A "
               "refusal is one kind of answer, so it only shows up once the chat format is there.")

    st.subheader("2 · What it actually writes", anchor=False)
    n_new = st.slider("Reply length (tokens, at most)", 16, 64, 40, 8, key="n", bind="query-params",
                      help=f"Greedy: always the most likely token. Each reply also stops after {ANSWER_BUDGET_S:.0f} "
                           "s, or at the end-of-turn token.")
    replies = follow(answers_job(chat_text, request, n_new), what="two replies")
    if replies is not None:
        for col, (title, gen) in zip(st.columns(2), (("In the chat template", replies[0]),
                                                     ("Plain text, no template", replies[1]))):
            with col.container(border=True):
                st.caption(f"{title} · {len(gen.new_ids)} tokens in {gen.seconds:.1f} s · "
                           + ("ended its turn" if gen.ended_by == END_OF_TURN else f"cut: {gen.ended_by}"))
                st.text(gen.text.strip() or "(empty)")
        opened = replies[0].text.strip()
        refused = any(opened.startswith(o) for o in REFUSAL_OPENINGS)
        st.caption(("The greedy reply opens with a refusal. " if refused else "The greedy reply does not open "
                    "with a refusal. ") + "Greedy decoding shows one path only; the measured probability above "
                   "says how much of the model's mass goes to refusing.")

    st.subheader("3 · Helpful against harmless, measured", anchor=False)
    st.markdown(f"The same refusal probability, for {len(RISKY_REQUESTS)} risky-sounding and {len(BENIGN_REQUESTS)} "
                f"benign requests, under each of the {len(CAUTION_LEVELS)} system prompts. A good refuser climbs on "
                "the risky line and stays flat on the benign one; raising caution usually lifts both.")
    bundled = follow(refusal_job(*bundled_requests()), what="refusal sweep of the bundled requests")
    requests, kinds = bundled_requests(request)
    yours = follow(refusal_job((request,), ("yours",)), what="refusal sweep of your request") \
        if kinds[-1] == "yours" else None
    if bundled is not None and bundled.complete:
        risky, benign = bundled.mean("risky"), bundled.mean("benign")
        means = {"risky": risky, "benign": benign}
        if yours is not None and yours.complete:
            means["yours"] = yours.mean("yours")
        elif kinds[-1] != "yours":
            means["yours"] = bundled.probabilities[:, bundled.requests.index(request)]
        m = metric_row(3)
        m[0].metric(f"Risky refused at level {level}", pct(risky[level]), versus_default(risky, level),
                    delta_color="off", delta_arrow="off",
                    help="Mean P(refusal opening) over the risky-sounding requests.")
        m[1].metric(f"Benign refused at level {level}", pct(benign[level]), versus_default(benign, level),
                    delta_color="off", delta_arrow="off",
                    help="Over-refusal: the same measure on harmless requests. Helpfulness pays for this.")
        m[2].metric("Risky ÷ benign", f"{risky[level] / benign[level]:.1f}×" if benign[level] > 0 else "—", help="How many times likelier a "
                    "refusal is for a risky request than for a benign one at this level: how well it tells them apart.")
        show_chart(figure(refusal_curve, LEVEL_NAMES, means, level,
                          title="How often the reply opens with a refusal, as the system prompt asks for caution"),
                   partial(pd.DataFrame, {"caution_level": LEVEL_NAMES, **{f"p_refusal_{k}": v
                                                                            for k, v in means.items()}}),
                   name="alignment-refusal-curve", key="refusal_curve")
        probs = bundled.probabilities
        show_chart(figure(tradeoff, LEVEL_NAMES, benign, risky, level,
                          title="The trade-off: refusing risky requests costs refusals of benign ones"),
                   partial(pd.DataFrame, {"caution_level": np.repeat(LEVEL_NAMES, len(bundled.requests)),
                                          "request": list(bundled.requests) * len(LEVEL_NAMES),
                                          "kind": list(bundled.kinds) * len(LEVEL_NAMES),
                                          "p_refusal_opening": probs.ravel()}),
                   name="alignment-tradeoff", key="tradeoff_chart")
        top = len(LEVEL_NAMES) - 1
        st.caption(f"Read honestly: SmolLM2-135M rarely opens with a refusal at all (look at the scale). With no "
                   f"system prompt the risky requests draw {pct(risky[1])} and the benign ones {pct(benign[1])}; the "
                   f"most cautious prompt, which hands the model the words “I'm sorry, but I can't help with that”, "
                   f"lifts them to {pct(risky[top])} and {pct(benign[top])}. Its refusals are shallow and "
                   "template-driven: caution raises them for every request, benign or not. Large chat models learn "
                   "the distinction from far more preference data, and even they over-refuse harmless requests "
                   "that sound alarming.")
    elif bundled is not None:
        st.warning("The sweep was stopped before every caution level was scored, so there is no curve to draw.",
                   icon=":material/stop_circle:")
