from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.agent import budget_bars, decision_grid
from charts.tool_use import tool_bars
from engine.using.agent import ACTIONS, ANSWER, SYSTEM_PROMPT, diagnose, step_reserve
from engine.using.chat_template import remove_special_tokens
from ui import concept_page, lm, prompt_input
from ui.agent import agent_job, opening_decision
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.layout import metric_row
from ui.text import escape_markdown

MAX_STEPS = 8
NO_FORCE = "none"
# (button label, task, thought tokens, step to force or NO_FORCE, action forced there)
PRESETS = [("Left alone: looping", "Which page explains the KV cache?", 0, NO_FORCE, "calculator"),
           ("Left alone: premature answer", "What is 37 times 24?", 12, NO_FORCE, "calculator"),
           ("Calculator, then answer", "What is 37 times 24?", 0, "1", "calculator"),
           ("Lookup, then answer", "Which page explains the KV cache?", 0, "2", ANSWER)]
REASONS = {"answered": "the model chose the answer action", "step limit": "every allowed step was used",
           "token budget": "fewer tokens were left than one step may add",
           "time limit": "the wall-clock limit was reached before the next step",
           "stopped by reader": "you pressed Stop", "no valid call": "the call did not close within its tokens"}


def use_preset(question: str, thought: int, step: str, tool: str) -> None:
    st.session_state.update(question=question, thought=thought, force_step=step, force_tool=tool)


def controls() -> tuple[int, int, int, int, dict[int, str]]:
    left, middle, right = st.columns(3)
    thought = left.slider("Thought tokens per step", 0, 24, 0, key="thought", bind="query-params",
                          help="The model writes a 'Thought:' line (greedy, cut at its line break) before each "
                               "action. 0 turns thinking off: the action follows the task directly.")
    steps = middle.slider("Step limit", 1, MAX_STEPS, 4, key="steps", bind="query-params",
                          help="The loop stops after this many think-act-observe steps, answered or not.")
    budget = right.slider("Token budget", 256, 2048, 1024, 64, key="budget", bind="query-params",
                          help="The context (prompt, examples, every thought, call and observation) may never "
                               "pass this many tokens. A step starts only if a full step still fits.")
    left, middle, right = st.columns(3)
    seconds = left.slider("Time limit (s)", 10, 240, 120, 10, key="seconds", bind="query-params",
                          help="Checked before each step: a step already started finishes. On a busy server "
                               "one step takes several seconds.")
    step = middle.selectbox("Force the action at step", [NO_FORCE] + [str(i) for i in range(1, MAX_STEPS + 1)],
                            key="force_step", bind="query-params",
                            help="Override the model's choice at one step; everything else stays the model's.")
    tool = right.selectbox("…to the action", ACTIONS, key="force_tool", bind="query-params",
                           disabled=step == NO_FORCE, help="The call's input is still decoded by the model.")
    forced = {} if step == NO_FORCE else {int(step): tool}
    return thought, steps, budget, seconds, forced


def first_decision(question: str, thought: int) -> None:
    st.subheader("1 · The first decision: every action scored in one pass", anchor=False)
    decision = opening_decision(question, thought)
    p = np.array(decision.probabilities)
    m = metric_row(3)
    m[0].metric("Likeliest first action", decision.likeliest, help='The action name the model finds likeliest '
                'right after {"tool": " in its first step.')
    m[1].metric("Its probability", f"{100 * p.max():.1f}%", help="Each action name's summed ln p after the call's "
                "opening, softmaxed over the three actions.")
    m[2].metric("Context before acting", f"{decision.context_tokens:,} tokens",
                help="System prompt, two solved examples, your task and the first thought, as tokens.")
    if decision.thought is not None:
        st.markdown(f"**First thought:** {escape_markdown(decision.thought) or '(empty)'}")
    show_chart(figure(tool_bars, ACTIONS, p, title="P(action) at step 1"),
               partial(pd.DataFrame, {"action": list(ACTIONS), "probability": p}), name="agent-first-decision",
               key="first_chart")


def the_loop(question: str, thought: int, steps: int, budget: int, seconds: int, forced: dict[int, str]) -> None:
    st.subheader("2 · The loop, step by step", anchor=False)
    run = follow(agent_job(question, thought, steps, budget, seconds, tuple(sorted(forced.items()))),
                 what="agent loop")
    if run is None:
        return
    m = metric_row(4)
    m[0].metric("Stop reason", run.stop_reason, help=REASONS.get(run.stop_reason, ""))
    m[1].metric("Steps taken", f"{len(run.steps)} of {run.step_limit}")
    m[2].metric("Context used", f"{(run.steps[-1].tokens_after if run.steps else run.start_tokens):,} of "
                f"{run.token_budget:,}", help=f"A step may add up to {run.reserve} tokens (thought, call of at most "
                "64 tokens, observation of at most 48, chat markers), so the loop stops when fewer remain.")
    m[3].metric("Answer", run.answer if run.answer is not None else "none", help="The input of the answer action.")
    st.caption(f"Stopped: {escape_markdown(REASONS.get(run.stop_reason, run.stop_reason))}. The whole run took "
               f"{run.seconds:.1f} s.")
    tokens = [run.start_tokens] + [s.tokens_after for s in run.steps]
    show_chart(figure(budget_bars, [run.start_tokens] + tokens[:-1],
                      [0] + list(np.diff(tokens)), run.token_budget, run.reserve,
                      title="The context against its token budget"),
               partial(pd.DataFrame, {"row": ["prompt"] + [f"step {s.number}" for s in run.steps],
                                      "tokens_after": tokens, "budget": run.token_budget}),
               name="agent-budget", key="budget_chart")
    if not run.steps:
        st.info("No step could start within these bounds: raise the token budget, or shorten the thoughts.",
                icon=":material/block:")
        return
    grid = [s.decision.probabilities for s in run.steps]
    chosen = [ACTIONS.index(s.chosen) for s in run.steps]
    show_chart(figure(decision_grid, ACTIONS, grid, chosen, [s.forced for s in run.steps],
                      title="P(action) at every decision (▶ = the action taken)"),
               partial(pd.DataFrame, {"step": [s.number for s in run.steps], "chosen": [s.chosen for s in run.steps],
                                      "forced": [s.forced for s in run.steps],
                                      **{f"p_{a}": [s.decision.probabilities[i] for s in run.steps]
                                         for i, a in enumerate(ACTIONS)}}),
               name="agent-decisions", key="decision_chart")
    for s in run.steps:
        with st.container(border=True):
            shares = ", ".join(f"{a} {100 * q:.1f}%" for a, q in zip(s.decision.names, s.decision.probabilities))
            how = "forced by you" if s.forced else "the likeliest"
            st.markdown(f"**Step {s.number}** · action **{s.chosen}** ({how}) · {shares} · "
                        f"context {s.tokens_after:,} tokens after the step · {s.seconds:.1f} s")
            if s.decision.thought is not None:
                st.markdown(f"Thought: {escape_markdown(s.decision.thought) or '(empty)'}")
            st.code(s.call, language="json", wrap_lines=True)
            if s.observation is not None:
                st.markdown(f"Observation (the app ran the {s.chosen}): {escape_markdown(s.observation)}")
    failures(run)
    with st.expander("The whole context at the end, as the model read it"):
        st.code(run.context, language=None, wrap_lines=True)


def failures(run) -> None:
    found = diagnose(run)
    st.subheader("3 · What went wrong", anchor=False)
    if not found:
        st.success("None of the four failure checks fired on this run.", icon=":material/check_circle:")
    for f in found:
        st.markdown(f"- **Step {f.step}: {f.kind}.** {escape_markdown(f.why)}")
    st.caption("Simple rules, not a judge: looping = the same call as an earlier step; wrong tool = the "
               "calculator for a task without numbers or a lookup for arithmetic; hallucinated arguments = numbers "
               "in a calculator call that neither the task nor an observation gave, or an answer that shares nothing "
               "with the observations; premature answer = answering before any tool returned a result. Forced "
               "actions are yours, so they are not blamed on the model.")


with concept_page("agents"):
    with st.expander("What the model reads before your task"):
        st.markdown("**System prompt:** " + escape_markdown(SYSTEM_PROMPT))
        st.caption("Then two solved tasks as chat turns (a calculator task, then a handbook lookup), each with "
                   "thoughts, calls, the tools' real observations and an answer action; then your task.")
    question = prompt_input("question", PRESETS[0][1], "Task for the agent", max_chars=160, max_tokens=48)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.markdown("Try:", width="content")
        for i, (label, *preset) in enumerate(PRESETS):
            st.button(label, key=f"preset-{i}", on_click=use_preset, args=tuple(preset), width="content")
    question, removed = remove_special_tokens(lm(), question)
    if removed:
        st.caption(":material/content_cut: Special tokens such as <|im_end|> were removed from your task.")
    thought, steps, budget, seconds, forced = controls()
    st.caption(f"One step may add up to {step_reserve(thought)} tokens; the action '{ANSWER}' ends the loop.")
    if question.strip():
        first_decision(question, thought)
        the_loop(question, thought, steps, budget, seconds, forced)
    else:
        st.info("Type a task above, or pick one: the model thinks, picks an action, and the app runs it.",
                icon=":material/edit:")
