"""Tool use measured: a JSON tool call decoded under a token mask, the tool run safely, its result fed back.

Constrained decoding. The call must be exactly {"tool": "<name>", "input": "<text>"} with <name> one of the
registered tools. At each step, every token of the vocabulary is checked against that grammar: a token is
allowed if the text so far plus the token's text is still the beginning of some valid call. The model's logits
of all other tokens are set to -inf, so the greedy pick is always allowed and the result always parses, whatever
the model would have preferred. The mask is built by a small state machine over the decoded text of each token
(byte-level BPE tokens that are only part of a UTF-8 character are never allowed). Libraries such as Outlines or
llguidance compile a whole JSON schema into such masks; this one is small enough to read.

Tools. The calculator parses its input with `ast` and evaluates only numbers and + - * / ** ( ) and unary minus;
anything else (names, calls, attributes, strings) is refused before anything runs, and sizes are bounded so
`9**9**9` cannot stall the server. The lookup finds handbook concepts whose titles match the input.
"""
from __future__ import annotations

import ast
import difflib
import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel

TOOLS = ("calculator", "lookup")
HEAD = '{"tool": "'
MIDDLE = '", "input": "'
TAIL = '"}'
MAX_INPUT_CHARS = 40
SAFE_CHARS = re.compile(r'[^"\\\x00-\x1f\x7f\ufffd]*')


# The grammar: a call is HEAD + tool + MIDDLE + safe text (<= MAX_INPUT_CHARS) + TAIL.

def _fixed_prefix_ok(text: str, names: Sequence[str]) -> tuple[bool, int]:
    """Does `text` start a valid call up to the input string? Returns (ok, index where the input starts or -1)."""
    for name in names:
        fixed = HEAD + name + MIDDLE
        if len(text) <= len(fixed):
            if fixed.startswith(text):
                return True, -1
        elif text.startswith(fixed):
            return True, len(fixed)
    return False, -1


def is_valid_prefix(text: str, names: Sequence[str] = TOOLS) -> bool:
    """True if some valid call starts with `text` (the complete call included)."""
    ok, start = _fixed_prefix_ok(text, names)
    if not ok or start < 0:
        return ok
    rest = text[start:]
    body = SAFE_CHARS.match(rest).group(0)
    if len(body) > MAX_INPUT_CHARS:
        return False
    after = rest[len(body):]
    return after == "" or (len(after) <= len(TAIL) and TAIL.startswith(after))


def is_complete(text: str, names: Sequence[str] = TOOLS) -> bool:
    return is_valid_prefix(text, names) and text.endswith(TAIL) and parse_call(text) is not None


def parse_call(text: str, names: Sequence[str] = TOOLS) -> dict | None:
    """The call as a dict if `text` is one JSON object with exactly "tool" (a known name) and "input" (a string)."""
    try:
        call = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(call, dict) or set(call) != {"tool", "input"}:
        return None
    if call["tool"] not in names or not isinstance(call["input"], str):
        return None
    return call


def allowed_mask(text: str, vocabulary: Sequence[str], names: Sequence[str] = TOOLS) -> np.ndarray:
    """Boolean mask over the vocabulary: the tokens that keep `text` a valid prefix of a call."""
    return np.fromiter((bool(piece) and is_valid_prefix(text + piece, names) for piece in vocabulary),
                       dtype=bool, count=len(vocabulary))


@dataclass(frozen=True)
class Step:
    chosen: int
    piece: str
    allowed: int                 # how many tokens the mask allowed at this step
    masked_prob: float           # the chosen token's probability after the mask (renormalised over allowed)
    free_top: int                # the token the model would have picked without the mask
    free_top_piece: str
    free_top_prob: float
    chosen_free_prob: float      # the chosen token's probability without the mask


@dataclass(frozen=True)
class Decoded:
    text: str
    steps: tuple[Step, ...]
    complete: bool


def constrained_call(lm: LiveModel, prompt_ids: list[int], vocabulary: Sequence[str], max_steps: int = 40,
                     names: Sequence[str] = TOOLS, on_step: Callable[[int, int], None] = lambda d, t: None,
                     should_stop: Callable[[], bool] = lambda: False) -> Decoded:
    """Greedy decoding where every step picks the likeliest ALLOWED token; stops when the call is complete."""
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.model.config)
    feed, text, steps = list(prompt_ids), "", []
    for n in range(max_steps):
        if should_stop() or is_complete(text, names):
            break
        with model_work():
            logits = lm.model(torch.tensor([feed]), past_key_values=cache, use_cache=True).logits[0, -1].float()
        mask = torch.from_numpy(allowed_mask(text, vocabulary, names))
        if not bool(mask.any()):
            break
        free = torch.softmax(logits, -1)
        masked = torch.softmax(logits.masked_fill(~mask, float("-inf")), -1)
        chosen, top = int(masked.argmax()), int(free.argmax())
        steps.append(Step(chosen, vocabulary[chosen], int(mask.sum()), float(masked[chosen]), top,
                          vocabulary[top], float(free[top]), float(free[chosen])))
        text += vocabulary[chosen]
        feed = [chosen]
        on_step(n + 1, max_steps)
    return Decoded(text, tuple(steps), is_complete(text, names))


# The tools.

class UnsafeExpression(ValueError):
    """The calculator refused its input: it is not plain arithmetic, or it is too big to compute."""


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_EXPRESSION_CHARS = 200
MAX_MAGNITUDE = 1e100


def calculate(expression: str) -> float:
    """Plain arithmetic only. The text is parsed, never executed: the tree is walked and any node that is not a
    number or one of + - * / ** ( ) raises UnsafeExpression before a single operation runs."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UnsafeExpression(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UnsafeExpression("not an arithmetic expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, *_BINARY, *_UNARY)):
            raise UnsafeExpression(f"'{type(node).__name__}' is not allowed: only numbers and + - * / ** ( )")
        if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                               or not isinstance(node.value, (int, float))):
            raise UnsafeExpression("only numbers are allowed")

    def value(node) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](value(node.operand))
        left, right = value(node.left), value(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or (abs(left) > 1 and
                                             abs(right) * math.log10(abs(left)) > 100)):
            raise UnsafeExpression("the power is too large")
        try:
            result = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise UnsafeExpression("division by zero") from None
        except OverflowError:
            raise UnsafeExpression("the result is too large") from None
        if isinstance(result, complex) or not math.isfinite(result) or abs(result) > MAX_MAGNITUDE:
            raise UnsafeExpression("the result is not a finite real number of sensible size")
        return result

    try:
        return value(tree)
    except RecursionError:
        raise UnsafeExpression("nested too deeply") from None


def lookup(query: str, titles: dict[str, str], limit: int = 3) -> list[tuple[str, str]]:
    """Concepts (slug, title) whose title contains the query's words, else the closest titles by spelling."""
    words = [w for w in re.findall(r"[a-z0-9]+", query.lower()) if len(w) > 2]
    scored = [(sum(w in title.lower() for w in words), slug, title) for slug, title in titles.items()]
    hits = [(slug, title) for score, slug, title in sorted(scored, key=lambda s: -s[0]) if score > 0]
    if hits:
        return hits[:limit]
    compact = re.sub(r"[^a-z0-9]", "", query.lower())   # "KVCache" still finds "KV cache"
    joined = [(slug, title) for slug, title in titles.items()
              if len(compact) > 2 and compact in re.sub(r"[^a-z0-9]", "", title.lower())]
    if joined:
        return joined[:limit]
    by_title = {title.lower(): slug for slug, title in titles.items()}
    close = difflib.get_close_matches(query.lower(), list(by_title), n=limit, cutoff=0.3)
    return [(by_title[c], titles[by_title[c]]) for c in close]


def run_tool(call: dict, titles: dict[str, str]) -> str:
    """The tool's answer as text, or why it refused. Never raises for any input."""
    if call["tool"] == "calculator":
        try:
            result = calculate(call["input"])
        except UnsafeExpression as refused:
            return f"error: {refused}"
        return f"{result:.10g}"
    found = lookup(call["input"], titles)
    return "; ".join(f"{title} (/{slug})" for slug, title in found) if found else "no concept found"


# The whole round: prompt, tool probabilities, constrained call, the tool run, its result fed back.

SYSTEM_PROMPT = ('You can call one tool. Reply with only a JSON object {"tool": NAME, "input": TEXT}. '
                 'Tools: "calculator" evaluates arithmetic; "lookup" finds a page of the LLM handbook by its title.')
# Two solved turns before the question: a 135M model copies a shown format far better than a described one.
_LOOKUP_EXAMPLE = ("Which page explains attention?", '{"tool": "lookup", "input": "attention"}')
_CALCULATOR_EXAMPLE = ("What is 5 plus 3?", '{"tool": "calculator", "input": "5+3"}')
# Which solved turns come before the question, and in what order: a small model leans toward the last one shown.
EXAMPLE_SETS = {"lookup, then calculator": (_LOOKUP_EXAMPLE, _CALCULATOR_EXAMPLE),
                "calculator, then lookup": (_CALCULATOR_EXAMPLE, _LOOKUP_EXAMPLE),
                "none": ()}
DEFAULT_EXAMPLES = "lookup, then calculator"
ANSWER_TOKENS = 40
FREE_TOKENS = 32


def call_messages(question: str, examples: str = DEFAULT_EXAMPLES) -> list[dict]:
    """System prompt, the solved example turns, then the reader's question."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for asked, call in EXAMPLE_SETS.get(examples, EXAMPLE_SETS[DEFAULT_EXAMPLES]):
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": call}]
    return messages + [{"role": "user", "content": question}]


def call_prompt_ids(lm: LiveModel, question: str, examples: str = DEFAULT_EXAMPLES) -> list[int]:
    from engine.using.chat_template import render
    from engine.tokens.offsets import token_ids
    return token_ids(lm, render(lm, call_messages(question, examples)))


def tool_probabilities(lm: LiveModel, question: str, examples: str = DEFAULT_EXAMPLES,
                       names: Sequence[str] = TOOLS) -> np.ndarray:
    """P(tool) among the tools, once the call has begun with {"tool": ": each name's summed ln p, softmaxed."""
    from engine.using.prompting import score_prompts
    from engine.tokens.offsets import token_ids
    prefix = call_prompt_ids(lm, question, examples) + token_ids(lm, HEAD)
    scored = score_prompts(lm, [prefix], [token_ids(lm, name) for name in names])[0]
    summed = np.array([sum(lp) for lp in scored])
    z = np.exp(summed - summed.max())
    return z / z.sum()


@dataclass(frozen=True)
class Round:
    question: str
    decoded: Decoded
    call: dict | None
    result: str | None
    answer: str | None           # the model's reply once the result is in its context
    free_text: str              # what the model wrote with no mask (same prompt, greedy)
    free_parses: bool


def tool_round(lm: LiveModel, question: str, examples: str, vocabulary: Sequence[str], titles: dict[str, str],
               on_step: Callable[[float, str], None] = lambda f, m: None,
               should_stop: Callable[[], bool] = lambda: False) -> Round:
    from engine.using.chat_template import render
    from engine.decoding.generation import generate

    prompt = call_prompt_ids(lm, question, examples)
    decoded = constrained_call(lm, prompt, vocabulary, on_step=lambda d, t: on_step(0.6 * d / t, f"Constrained "
                               f"decoding: token {d}"), should_stop=should_stop)
    call = parse_call(decoded.text) if decoded.complete else None
    result = run_tool(call, titles) if call else None
    answer = None
    if call and not should_stop():
        on_step(0.65, "Running the tool and feeding its result back")
        messages = call_messages(question, examples) + [
            {"role": "assistant", "content": decoded.text},
            {"role": "user", "content": f"The {call['tool']} returned: {result}\nAnswer my question in one sentence."}]
        answer = generate(lm, render(lm, messages), ANSWER_TOKENS).new_text.strip()
    free = ""
    if not should_stop():
        on_step(0.85, "Decoding the same prompt with no mask, for comparison")
        free = generate(lm, render(lm, call_messages(question, examples)), FREE_TOKENS).new_text.strip()
    return Round(question, decoded, call, result, answer, free, parse_call(free) is not None)
