from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.tool_use import mask_steps, tool_bars
from engine.using.chat_template import remove_special_tokens
from engine.using.tool_use import (DEFAULT_EXAMPLES, EXAMPLE_SETS, MAX_INPUT_CHARS, SYSTEM_PROMPT, TOOLS, UnsafeExpression,
                             calculate)
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import escape_markdown
from ui.tool_use import probabilities, round_job, vocabulary

QUESTION_KEY = "question"
PRESETS = ["Which page explains the KV cache?", "What is (17 + 4) * 3?", "What is 37 times 24?"]


def use_question(text: str) -> None:
    st.session_state[QUESTION_KEY] = text


def which_tool(question: str) -> str:
    st.subheader("1 · Which tool? One pass, every tool scored", anchor=False)
    examples = st.selectbox("Solved examples before your question", list(EXAMPLE_SETS),
                            index=list(EXAMPLE_SETS).index(DEFAULT_EXAMPLES), key="examples", bind="query-params",
                            help="One solved call per tool is shown as earlier chat turns, in this order. A small "
                                 "model leans toward the tool of the last example: change the order and watch.")
    p = probabilities(question, examples)
    m = metric_row(2)
    m[0].metric("Likeliest tool", TOOLS[int(np.argmax(p))], help="The tool name the model finds likeliest right "
                'after {"tool": " — the start every call shares.')
    m[1].metric("Its probability", f"{100 * max(p):.1f}%", help="Among the registered tools only: each name's "
                "summed ln p after the call's opening, turned into shares (softmax).")
    show_chart(figure(tool_bars, TOOLS, p, title="P(tool) once the call has begun"),
               partial(pd.DataFrame, {"tool": list(TOOLS), "probability": p}), name="tool-use-tools",
               key="tools_chart")
    return examples


def the_round(question: str, examples: str) -> None:
    st.subheader("2 · The call, decoded under a token mask", anchor=False)
    done = follow(round_job(question, examples), what="constrained call, tool run and answer")
    if done is None:
        return
    vocab_size = len(vocabulary())
    steps = done.decoded.steps
    m = metric_row(4)
    m[0].metric("Tokens decoded", len(steps), help="Greedy steps, each over the allowed tokens only.")
    m[1].metric("Fewest allowed", f"{min(s.allowed for s in steps):,} of {vocab_size:,}",
                help="At fixed parts of the call (the braces, the keys) the grammar leaves a handful of tokens.")
    m[2].metric("Constrained call parses", "yes" if done.call else "no",
                help='As JSON, with exactly "tool" (a registered name) and "input" (a string).')
    m[3].metric("Unmasked reply parses", "yes" if done.free_parses else "no",
                help="The same prompt decoded greedily with no mask, read the same way.")
    show_chart(figure(mask_steps, [s.piece for s in steps], [s.allowed for s in steps], vocab_size,
                      [s.masked_prob for s in steps], [s.free_top_piece for s in steps],
                      [s.free_top_prob for s in steps], title="How many tokens the mask allows at each step"),
               partial(pd.DataFrame, {"step": range(1, len(steps) + 1), "chosen_id": [s.chosen for s in steps],
                                      "chosen": [s.piece for s in steps], "allowed": [s.allowed for s in steps],
                                      "chosen_prob_masked": [s.masked_prob for s in steps],
                                      "chosen_prob_unmasked": [s.chosen_free_prob for s in steps],
                                      "unmasked_favourite": [s.free_top_piece for s in steps],
                                      "unmasked_favourite_prob": [s.free_top_prob for s in steps]}),
               name="tool-use-mask", key="mask_chart")
    overridden = sum(s.chosen != s.free_top for s in steps)
    st.caption(f"Hover a bar for the chosen token's share of the allowed probability and what the model would have "
               f"picked unmasked. The mask overrode the model's favourite at {overridden} of {len(steps)} steps. "
               f"The input string is capped at {MAX_INPUT_CHARS} characters, with no quote or backslash in it.")
    left, right = st.columns(2)
    left.markdown("**Constrained call**")
    left.code(done.decoded.text, language="json", wrap_lines=True)
    right.markdown("**Same prompt, no mask**")
    right.code(done.free_text or "(nothing)", language=None, wrap_lines=True)

    st.subheader("3 · The tool runs; its result goes back into the context", anchor=False)
    if not done.call:
        st.warning("The call did not complete within its token budget, so no tool ran.", icon=":material/block:")
        return
    st.markdown(f"**Tool result** ({escape_markdown(done.call['tool'])} run by the app on "
                f"'{escape_markdown(done.call['input'])}'): {escape_markdown(done.result or '(none)')}")
    st.markdown(f"**The model's answer, with the result in its context:** {escape_markdown(done.answer or '')}")
    st.caption("The result is appended as a new turn after the model's call; the model then writes its reply "
               "(greedy, at most 40 tokens). A 135M model often picks a sensible tool but copies the wrong numbers "
               "into it, or ignores the result: the mask guarantees the form of the call, never its content.")


def calculator() -> None:
    st.subheader("The calculator on its own: parsed, never executed", anchor=False)
    expression = prompt_input("expr", "2**10 - 24/3", "Expression (try something hostile)", max_chars=200,
                              max_tokens=80)
    try:
        st.metric("Result", f"{calculate(expression):.10g}")
    except UnsafeExpression as refused:
        st.metric("Result", "refused", help="Nothing was run.")
        st.caption(f"Refused before anything ran: {escape_markdown(str(refused))}.")
    st.caption("The text is parsed into a syntax tree with Python's ast module; only numbers and + - * / ** ( ) "
               "are accepted, powers and results are bounded. Names, calls, attributes and strings "
               "(`__import__('os')`) are refused at parse time: there is no eval of your text.")


with concept_page("tool-use"):
    st.caption("The model reads a system prompt, solved example turns (one per tool, chosen below), then your question. "
               "System prompt: " + escape_markdown(SYSTEM_PROMPT))
    question = prompt_input(QUESTION_KEY, PRESETS[0], "Question for the model", max_chars=200, max_tokens=60)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Try:", width="content")
        for i, preset in enumerate(PRESETS):
            st.button(preset, key=f"preset-{i}", on_click=use_question, args=(preset,), width="content")
    question, removed = remove_special_tokens(lm(), question)
    if removed:
        st.caption(":material/content_cut: Special tokens such as <|im_end|> were removed from your question: "
                   "typed into a chat they would close your turn and could forge a system turn.")
    if question.strip():
        the_round(question, which_tool(question))
    else:
        st.info("Type a question above, or pick one: the model chooses a tool and writes its call.",
                icon=":material/edit:")
    calculator()
