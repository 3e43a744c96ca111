"""An agent loop measured: think, act, observe, repeated under hard bounds, every decision scored over all tools.

ReAct (Yao et al. 2022) interleaves a free-text reasoning line ("Thought") with an action the application
carries out ("Act"), and feeds the action's result back into the context ("Observation") before the next
step. An agent is nothing more than that loop around an ordinary language model; what makes it safe to run is
the set of bounds the application puts around it.

One step here, on SmolLM2:
1. Thought: the model writes greedily after "Thought:", at most `thought_tokens` tokens, cut at the first line
   break (0 turns thinking off).
2. Decision: once the call has begun with {"tool": ", every available action's name is scored by its summed
   log-likelihood and the scores are softmaxed over the actions: one number per action, all shown. The chosen
   action is the likeliest, unless the reader forces another at that step.
3. Arguments: the call is decoded under the tool-use page's token mask with the grammar narrowed to the chosen
   name, so it always parses (engine.using.tool_use.constrained_call).
4. Observation: the app runs the tool (the safe calculator or the handbook lookup) and appends its result as a
   new turn. The action "answer" ends the loop instead.

The loop stops for one of four reasons, checked before every step: answered; the step limit; the token budget
(a step may add at most `step_reserve` tokens, so the loop stops when fewer than that remain, and the context
can never pass the budget); the time limit. A reader's stop request is a fifth.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.model.live_model import LiveModel
from engine.tokens.offsets import token_ids
from engine.using.chat_template import render
from engine.using.tool_use import (HEAD, MAX_INPUT_CHARS, MIDDLE, TAIL, TOOLS, constrained_call, parse_call,
                                   run_tool)

ANSWER = "answer"
ACTIONS = TOOLS + (ANSWER,)
SYSTEM_PROMPT = ("You solve a task in steps. In each step write one line 'Thought: ...' and then one line with a "
                 'JSON action {"tool": NAME, "input": TEXT}. Tools: "calculator" evaluates arithmetic; "lookup" '
                 'finds a page of the LLM handbook by its title; "answer" gives the final answer and ends the task. '
                 "After each tool call you get an Observation.")
MAX_OBSERVATION_CHARS = 120
# The longest call the grammar allows: its fixed parts, the longest name, and one token per input character.
CALL_TOKEN_LIMIT = 24 + MAX_INPUT_CHARS
# "Thought:", the line break, the chat markers of the assistant turn and the observation turn.
STEP_OVERHEAD_TOKENS = 16
OBSERVATION_TOKEN_LIMIT = 48
STOP_REASONS = ("answered", "step limit", "token budget", "time limit", "stopped by reader", "no valid call")


@dataclass(frozen=True)
class Example:
    """A solved task shown to the model before the reader's: a thought, a call and the tool's result per step."""
    task: str
    steps: tuple[tuple[str, str, str], ...]     # (thought, tool, input)


# A small model copies a shown trajectory far better than a described one: one per tool, each ending in "answer".
EXAMPLES = (Example("What is 5 plus 3?", (("I need arithmetic, so I use the calculator.", "calculator", "5+3"),
                                           ("The calculator gave the result.", ANSWER, "8"))),
            Example("Which page explains attention?", (("I should search the handbook.", "lookup", "attention"),
                                                       ("I found the page.", ANSWER, "Self-attention"))))


def call_text(tool: str, argument: str) -> str:
    return HEAD + tool + MIDDLE + argument + TAIL


def observation_text(result: str) -> str:
    return "Observation: " + result[:MAX_OBSERVATION_CHARS]


def assistant_text(thought: str | None, call: str) -> str:
    return (f"Thought: {thought}\n" if thought is not None else "") + call


def example_messages(titles: dict[str, str], thinking: bool) -> list[dict]:
    """The solved examples as chat turns; their observations come from the real tools, so they never lie."""
    messages = []
    for example in EXAMPLES:
        messages.append({"role": "user", "content": "Task: " + example.task})
        for thought, tool, argument in example.steps:
            messages.append({"role": "assistant",
                             "content": assistant_text(thought if thinking else None, call_text(tool, argument))})
            if tool != ANSWER:
                result = run_tool({"tool": tool, "input": argument}, titles)
                messages.append({"role": "user", "content": observation_text(result)})
    return messages


def start_messages(question: str, titles: dict[str, str], thinking: bool) -> list[dict]:
    return ([{"role": "system", "content": SYSTEM_PROMPT}] + example_messages(titles, thinking)
            + [{"role": "user", "content": "Task: " + question}])


def step_reserve(thought_tokens: int) -> int:
    """The most tokens one step can add to the context: thought, call, observation and the turn markers."""
    return int(thought_tokens) + CALL_TOKEN_LIMIT + OBSERVATION_TOKEN_LIMIT + STEP_OVERHEAD_TOKENS


def action_probabilities(lm: LiveModel, prefix_ids: list[int], names: Sequence[str] = ACTIONS) -> np.ndarray:
    """P(action) once the call has begun: each name's summed ln p after the prefix, softmaxed over the names."""
    from engine.using.prompting import score_prompts
    scored = score_prompts(lm, [prefix_ids], [token_ids(lm, name) for name in names])[0]
    summed = np.array([sum(lp) for lp in scored])
    z = np.exp(summed - summed.max())
    return z / z.sum()


def think(lm: LiveModel, context: str, thought_tokens: int) -> str | None:
    """The model's thought line: greedy after "Thought:", cut at the first line break; None when thinking is off."""
    from engine.decoding.generation import generate
    if thought_tokens <= 0:
        return None
    written = generate(lm, context + "Thought:", thought_tokens).new_text
    line = re.split(r"[\r\n]", written, maxsplit=1)[0]
    return line.replace("<|im_end|>", "").replace("<|im_start|>", "").strip()


@dataclass(frozen=True)
class Decision:
    thought: str | None
    names: tuple[str, ...]
    probabilities: tuple[float, ...]
    context_tokens: int          # tokens in the context the action was scored on (thought included)

    @property
    def likeliest(self) -> str:
        return self.names[int(np.argmax(self.probabilities))]


def decide(lm: LiveModel, context: str, thought_tokens: int) -> Decision:
    """Think, then score every action's name as the continuation of {"tool": " (one pass over the context)."""
    thought = think(lm, context, thought_tokens)
    prefix = context + assistant_text(thought, "")
    ids = token_ids(lm, prefix + HEAD)
    p = action_probabilities(lm, ids)
    return Decision(thought, ACTIONS, tuple(float(x) for x in p), len(token_ids(lm, prefix)))


def first_decision(lm: LiveModel, question: str, titles: dict[str, str], thought_tokens: int) -> Decision:
    """The loop's first decision on its own: what the page can draw before the run as a job."""
    return decide(lm, render(lm, start_messages(question, titles, thought_tokens > 0)), thought_tokens)


@dataclass(frozen=True)
class AgentStep:
    number: int
    decision: Decision
    chosen: str
    forced: bool
    call: str                    # the call as decoded under the mask
    argument: str | None         # its "input", None if the call did not complete
    observation: str | None      # the tool's result (None for "answer" or an incomplete call)
    tokens_after: int            # the context's length once this step's turns are in it
    seconds: float


@dataclass(frozen=True)
class AgentRun:
    question: str
    steps: tuple[AgentStep, ...]
    stop_reason: str
    answer: str | None
    start_tokens: int
    token_budget: int
    step_limit: int
    time_limit_s: float
    reserve: int
    context: str                 # the whole context at the end, as the model read it
    seconds: float


def run_agent(lm: LiveModel, question: str, vocabulary: Sequence[str], titles: dict[str, str], *,
              thought_tokens: int = 12, step_limit: int = 4, token_budget: int = 1024, time_limit_s: float = 60.0,
              forced: dict[int, str] | None = None, on_step: Callable[[float, str], None] = lambda f, m: None,
              stop_requested: Callable[[], bool] = lambda: False, clock: Callable[[], float] = time.monotonic
              ) -> AgentRun:
    """The bounded loop. `forced` maps a 1-based step number to the action taken there whatever the model prefers."""
    forced = {int(k): v for k, v in (forced or {}).items() if v in ACTIONS}
    started = clock()
    messages = start_messages(question, titles, thought_tokens > 0)
    context = render(lm, messages)
    start_tokens = used = len(token_ids(lm, context))
    reserve = step_reserve(thought_tokens)
    steps: list[AgentStep] = []
    answer, reason = None, "step limit"
    for number in range(1, step_limit + 1):
        if stop_requested():
            reason = "stopped by reader"
            break
        if clock() - started >= time_limit_s:
            reason = "time limit"
            break
        if used + reserve > token_budget:
            reason = "token budget"
            break
        step_started = clock()
        on_step((number - 1) / step_limit, f"Step {number} of at most {step_limit}: thinking and scoring the actions")
        decision = decide(lm, context, thought_tokens)
        chosen = forced.get(number, decision.likeliest)
        on_step((number - 0.5) / step_limit, f"Step {number}: writing the {chosen} call under the token mask")
        prefix_ids = token_ids(lm, context + assistant_text(decision.thought, ""))
        decoded = constrained_call(lm, prefix_ids, vocabulary, max_steps=CALL_TOKEN_LIMIT, names=(chosen,),
                                   should_stop=stop_requested)
        # tool_use's completeness check knows only the registered tools, so "answer" is parsed here: the mask
        # allows nothing after a closed call, so the decoder has ended exactly at the call's end.
        call = parse_call(decoded.text, (chosen,))
        if call is None and stop_requested():      # cut off mid-call: the half-written step is dropped
            reason = "stopped by reader"
            break
        argument = call["input"] if call else None
        messages.append({"role": "assistant", "content": assistant_text(decision.thought, decoded.text)})
        observation = None
        if call and chosen != ANSWER:
            observation = run_tool(call, titles)
            messages.append({"role": "user", "content": observation_text(observation)})
        context = render(lm, messages)
        used = len(token_ids(lm, context))
        steps.append(AgentStep(number, decision, chosen, number in forced, decoded.text, argument, observation,
                               used, clock() - step_started))
        if call is None:
            reason = "no valid call"
            break
        if chosen == ANSWER:
            answer, reason = argument, "answered"
            break
    return AgentRun(question, tuple(steps), reason, answer, start_tokens, int(token_budget), int(step_limit),
                    float(time_limit_s), reserve, context, clock() - started)


# Failure modes, read off a finished run. They are simple rules, named as such on the page.

@dataclass(frozen=True)
class Failure:
    step: int
    kind: str                    # looping, wrong tool, hallucinated arguments, premature answer
    why: str


def _numbers(text: str) -> set[str]:
    return {n.lstrip("0") or "0" for n in re.findall(r"\d+(?:\.\d+)?", text)}


_ARITHMETIC = re.compile(r"\d\s*(?:[-+*/×^]|times|plus|minus|divided by|over)\s*\(?\s*\d", re.I)


def _shares_content(answer: str, observations: list[str]) -> bool:
    words = {w for w in re.findall(r"[a-z0-9]+", answer.lower()) if len(w) > 1 or w.isdigit()}
    seen = {w for o in observations for w in re.findall(r"[a-z0-9]+", o.lower())}
    return bool(words & seen)


def diagnose(run: AgentRun) -> list[Failure]:
    """The four classic failures of a small agent, each with the step where it shows."""
    found: list[Failure] = []
    seen: dict[tuple[str, str], int] = {}
    has_digits = bool(re.search(r"\d", run.question))
    arithmetic = bool(_ARITHMETIC.search(run.question))
    known = _numbers(run.question)
    observed = False
    for step in run.steps:
        action = (step.chosen, step.argument or "")
        if step.chosen != ANSWER and action in seen:
            found.append(Failure(step.number, "looping", f"The same call as step {seen[action]}: "
                                 "the new observation adds nothing, and only a bound ends the loop."))
        seen.setdefault(action, step.number)
        if step.forced:          # the reader's choice, not the model's: only its arguments are the model's
            pass
        elif step.chosen == "calculator" and not has_digits:
            found.append(Failure(step.number, "wrong tool", "The calculator, for a task with no number in it."))
        elif step.chosen == "lookup" and arithmetic:
            found.append(Failure(step.number, "wrong tool", "A handbook lookup for arithmetic."))
        if step.chosen == "calculator" and step.argument is not None:
            invented = sorted(_numbers(step.argument) - known)
            if invented:
                found.append(Failure(step.number, "hallucinated arguments", "Numbers in the call that the task "
                                     f"never gave: {', '.join(invented)}."))
        if step.chosen == ANSWER and not observed and not step.forced:
            found.append(Failure(step.number, "premature answer", "Answered before any tool returned a result: "
                                 "the answer can only come from the model's own guess."))
        if step.chosen == ANSWER and observed and step.argument is not None and not _shares_content(
                step.argument, [s.observation for s in run.steps if s.observation]):
            found.append(Failure(step.number, "hallucinated arguments", "The answer shares no number or word "
                                 "with any observation: the model wrote it from its examples or its own guess."))
        if step.observation is not None:
            observed = True
            known |= _numbers(step.observation)
    return found
