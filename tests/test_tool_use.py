"""The tool-call grammar, its token mask, the constrained decoder on the real model, and a calculator that never
runs anything but arithmetic."""
import builtins
import os

import numpy as np
import pytest

from engine.tokens.offsets import decode_each
from engine.using.tool_use import (UnsafeExpression, allowed_mask, calculate, call_prompt_ids, constrained_call,
                             is_complete, is_valid_prefix, lookup, parse_call, run_tool)

HOSTILE = ["__import__('os').system('touch /tmp/tool_use_pwned')", "().__class__.__bases__", "open('/etc/passwd')",
           "[1, 2]", "'a' * 3", "x + 1", "lambda: 1", "1 if 1 else 2", "9**9**9", "10**400", "1/0", "True + 1",
           "", "(" * 500 + "1" + ")" * 500, "2 ** 0.5 ** -1e9", "(-8) ** 0.5", "1e308 * 10", "print(1)"]


def test_grammar_accepts_exactly_the_call_and_its_prefixes():
    call = '{"tool": "calculator", "input": "2+3"}'
    assert all(is_valid_prefix(call[:i]) for i in range(len(call) + 1))
    assert is_complete(call) and parse_call(call) == {"tool": "calculator", "input": "2+3"}
    for bad in ['{"tool": "shell"', '{"tool": "lookup", "input": "a"b"}', '{"tool": "lookup", "input": "x"}}',
                '{"tool": "lookup", "input": "' + "a" * 41, ' {', '{"tool": "lookup", "input": "a\\']:
        assert not is_valid_prefix(bad), bad
    assert parse_call('{"tool": "lookup"}') is None and parse_call("not json") is None


def test_mask_allows_only_tokens_that_keep_a_valid_prefix():
    vocab = ["{", '{"', "tool", '"', "hello", "", '"}', "ator", "a", "x", '"x', "\\"]
    assert list(np.flatnonzero(allowed_mask("", vocab))) == [0, 1]
    assert set(np.flatnonzero(allowed_mask('{"tool": "calcul', vocab))) == {7, 8}
    inside = allowed_mask('{"tool": "lookup", "input": "ab', vocab)
    assert inside[vocab.index('"}')] and inside[vocab.index("x")] and inside[vocab.index("{")]   # { is text here
    assert not inside[vocab.index('"x')] and not inside[vocab.index("\\")] and not inside[vocab.index("")]


def test_constrained_decoding_on_the_model_picks_only_allowed_tokens_and_parses(lm):
    vocab = decode_each(lm, list(range(len(lm.tokenizer))))
    decoded = constrained_call(lm, call_prompt_ids(lm, "What is 6 times 7?"), vocab)
    assert decoded.complete and parse_call(decoded.text) is not None
    text = ""
    for step in decoded.steps:
        mask = allowed_mask(text, vocab)
        assert mask[step.chosen] and int(mask.sum()) == step.allowed
        text += vocab[step.chosen]
    assert text == decoded.text
    assert min(s.allowed for s in decoded.steps) < 10 < max(s.allowed for s in decoded.steps)


def test_calculator_computes_arithmetic():
    assert calculate("2**10 - 24/3") == 1016
    assert calculate("(17 + 4) * 3") == 63
    assert calculate("-2 ** 2") == -4 and calculate("7 / 2") == 3.5


@pytest.mark.parametrize("expression", HOSTILE)
def test_hostile_calculator_input_is_refused_and_nothing_is_executed(expression, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec must never be called")
    for name in ("eval", "exec"):   # (ast.parse itself uses compile() to parse, which runs nothing)
        monkeypatch.setattr(builtins, name, forbidden)
    with pytest.raises(UnsafeExpression):
        calculate(expression)
    assert not os.path.exists("/tmp/tool_use_pwned")
    assert run_tool({"tool": "calculator", "input": expression}, {}).startswith("error:")


def test_lookup_finds_concepts_by_title_words_or_spelling():
    titles = {"kv-cache": "The KV cache", "rope": "Rotary position embeddings (RoPE)", "bpe": "Byte-pair encoding"}
    assert lookup("kv cache", titles)[0][0] == "kv-cache"
    assert lookup("KVCache", titles)[0][0] == "kv-cache"
    assert run_tool({"tool": "lookup", "input": "zzzz"}, titles) == "no concept found"
