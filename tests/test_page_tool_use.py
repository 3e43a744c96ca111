"""The tool-use page shows the model's own tool probabilities, a call that parses and matches the schema, mask sizes
that the grammar recomputes with every chosen token inside its mask, the tool's real result; hostile calculator
input is refused and never runs."""
import json
import os

import numpy as np

from engine.tokens.offsets import decode_each, token_ids
from engine.using.tool_use import HEAD, TOOLS, allowed_mask, call_prompt_ids, constrained_call, parse_call, run_tool
from tests.pages import assert_no_exception, open_page, plotly_array, run_until, shown_text
from ui.text import escape_markdown
from tests.test_prompting import plain_logprobs
from ui.tool_use import titles

PWNED = "/tmp/tool_use_page_pwned"


def chart(at, key: str) -> dict | None:
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(found[0].proto.spec) if found else None


def metric(at, label: str):
    return next(m for m in at.metric if m.label == label)


def expected_tool_probabilities(lm, question: str, examples: str = "lookup, then calculator") -> np.ndarray:
    prefix = call_prompt_ids(lm, question, examples) + token_ids(lm, HEAD)
    summed = np.array([sum(plain_logprobs(lm, prefix, token_ids(lm, name))) for name in TOOLS])
    return np.exp(summed - summed.max()) / np.exp(summed - summed.max()).sum()


def test_the_call_parses_every_token_was_allowed_and_the_tool_really_ran(lm):
    question = "Which page explains the KV cache?"
    at = open_page("tool-use")
    assert_no_exception(at)
    bars = chart(at, "tools_chart")["data"][0]
    np.testing.assert_allclose(plotly_array(bars["x"]) / 100, expected_tool_probabilities(lm, question), atol=1e-3)
    run_until(at, lambda a: chart(a, "mask_chart") is not None, timeout=300)
    assert_no_exception(at)

    shown_call = at.code[0].value
    call = parse_call(shown_call)
    assert call is not None and set(call) == {"tool", "input"} and call["tool"] in TOOLS
    vocab = decode_each(lm, list(range(len(lm.tokenizer))))
    decoded = constrained_call(lm, call_prompt_ids(lm, question), vocab)     # the engine, run again
    assert decoded.text == shown_call
    shown_allowed = plotly_array(chart(at, "mask_chart")["data"][0]["y"])
    np.testing.assert_array_equal(shown_allowed, [s.allowed for s in decoded.steps])
    text = ""
    for step in decoded.steps:      # the grammar's own mask, rebuilt from the text so far
        mask = allowed_mask(text, vocab)
        assert mask[step.chosen] and int(mask.sum()) == step.allowed
        text += vocab[step.chosen]
    assert metric(at, "Fewest allowed").value == f"{min(s.allowed for s in decoded.steps):,} of {len(vocab):,}"
    assert metric(at, "Constrained call parses").value == "yes"
    assert f"): {escape_markdown(run_tool(call, titles()))}" in shown_text(at)


def test_hostile_calculator_input_is_refused_and_arithmetic_is_computed():
    at = open_page("tool-use", {"expr": f"__import__('os').system('touch {PWNED}')", "question": ""})
    assert_no_exception(at)
    assert metric(at, "Result").value == "refused"
    assert not os.path.exists(PWNED)
    assert any("Type a question" in i.value for i in at.info)
    at = open_page("tool-use", {"expr": "(17 + 4) * 3 - 2**3", "question": ""})
    assert metric(at, "Result").value == "55"


def test_a_shared_link_restores_the_question_and_the_examples(lm):
    question, examples = "What is 12 plus 30?", "calculator, then lookup"
    at = open_page("tool-use", {"question": question, "examples": examples})
    assert_no_exception(at)
    assert (at.text_input(key="question").value, at.selectbox(key="examples").value) == (question, examples)
    bars = chart(at, "tools_chart")["data"][0]
    np.testing.assert_allclose(plotly_array(bars["x"]) / 100, expected_tool_probabilities(lm, question, examples),
                               atol=1e-3)
