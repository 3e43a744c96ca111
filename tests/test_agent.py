"""The agent loop: its bounds always hold and are named, every step takes the likeliest action unless forced, the
action probabilities are the model's own (held to a plain forward pass), and the failure rules fire on the runs
they describe."""
import numpy as np
import pytest

from concepts.catalogue import load_catalogue
from engine.tokens.offsets import decode_each, token_ids
from engine.using.agent import (ACTIONS, ANSWER, AgentRun, AgentStep, Decision, HEAD, action_probabilities,
                                assistant_text, diagnose, first_decision, run_agent, start_messages, step_reserve)
from engine.using.chat_template import render
from tests.test_prompting import plain_logprobs


@pytest.fixture(scope="module")
def vocab(lm):
    return tuple(decode_each(lm, list(range(len(lm.tokenizer)))))


@pytest.fixture(scope="module")
def titles():
    return {c.slug: c.title for c in load_catalogue().concepts}


def step(number, chosen, argument, observation=None, forced=False):
    decision = Decision(None, ACTIONS, (0.2, 0.3, 0.5), 300)
    call = assistant_text(None, HEAD + chosen + '", "input": "' + argument + '"}')
    return AgentStep(number, decision, chosen, forced, call, argument, observation, 300 + 50 * number, 1.0)


def run_of(question, *steps):
    return AgentRun(question, tuple(steps), "step limit", None, 300, 1024, 4, 60.0, step_reserve(0), "", 1.0)


def test_the_failure_rules_fire_on_the_runs_they_describe():
    kinds = lambda run: [(f.step, f.kind) for f in diagnose(run)]
    assert kinds(run_of("What is 37 times 24?", step(1, ANSWER, "24"))) == [(1, "premature answer")]
    looping = run_of("Which page explains the KV cache?", step(1, "lookup", "KV cache", "The KV cache (/kv-cache)"),
                     step(2, "lookup", "KV cache", "The KV cache (/kv-cache)"))
    assert kinds(looping) == [(2, "looping")]
    assert kinds(run_of("What is 6 times 7?", step(1, "calculator", "6*8", "48"))) == [(1, "hallucinated arguments")]
    assert kinds(run_of("Which page explains attention?", step(1, "calculator", "2+2", "4"))) == \
        [(1, "wrong tool"), (1, "hallucinated arguments")]
    assert kinds(run_of("What is 6 times 7?", step(1, "lookup", "six", "no concept found"))) == [(1, "wrong tool")]
    good = run_of("What is 6 times 7?", step(1, "calculator", "6*7", "42"), step(2, ANSWER, "42"))
    assert diagnose(good) == []
    ignored = run_of("What is 6 times 7?", step(1, "calculator", "6*7", "42"), step(2, ANSWER, "Paris"))
    assert kinds(ignored) == [(2, "hallucinated arguments")]
    forced = run_of("What is 6 times 7?", step(1, ANSWER, "42", forced=True))
    assert diagnose(forced) == []          # the reader's action is not the model's failure


def test_a_budget_too_small_for_one_step_stops_before_any_model_work(lm, vocab, titles):
    run = run_agent(lm, "What is 6 times 7?", vocab, titles, thought_tokens=0, token_budget=256)
    assert run.steps == () and run.stop_reason == "token budget"
    assert run.start_tokens == len(token_ids(lm, render(lm, start_messages("What is 6 times 7?", titles, False))))
    assert run.start_tokens + run.reserve > 256


def test_a_spent_time_limit_and_a_stop_request_are_named(lm, vocab, titles):
    ticks = iter(range(0, 1000, 100))
    run = run_agent(lm, "What is 6 times 7?", vocab, titles, thought_tokens=0, time_limit_s=50,
                    clock=lambda: next(ticks))
    assert run.steps == () and run.stop_reason == "time limit"
    run = run_agent(lm, "What is 6 times 7?", vocab, titles, thought_tokens=0, stop_requested=lambda: True)
    assert run.steps == () and run.stop_reason == "stopped by reader"


def test_a_forced_step_runs_the_tool_and_the_step_limit_is_named(lm, vocab, titles):
    question = "What is 37 times 24?"
    run = run_agent(lm, question, vocab, titles, thought_tokens=0, step_limit=1, forced={1: "calculator"})
    assert run.stop_reason == "step limit" and len(run.steps) == 1 and run.answer is None
    first = run.steps[0]
    assert first.forced and first.chosen == "calculator" and first.argument == "37*24" and first.observation == "888"
    assert first.decision.likeliest != "calculator"        # the model itself would not have called it
    assert run.start_tokens < first.tokens_after <= run.start_tokens + run.reserve <= run.token_budget
    # the first decision alone (what the page draws at once) is the loop's own first decision
    assert first_decision(lm, question, titles, 0) == first.decision


def test_action_probabilities_are_the_models_summed_log_likelihoods(lm, titles):
    context = render(lm, start_messages("Which page explains the KV cache?", titles, False))
    prefix = token_ids(lm, context + HEAD)
    summed = np.array([sum(plain_logprobs(lm, prefix, token_ids(lm, a))) for a in ACTIONS])
    expected = np.exp(summed - summed.max()) / np.exp(summed - summed.max()).sum()
    np.testing.assert_allclose(action_probabilities(lm, prefix), expected, atol=1e-4)
