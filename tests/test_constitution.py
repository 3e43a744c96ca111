"""The critique-then-revise loop: prompts chain step to step, every generation bounded, the judge transparent."""
import numpy as np
import pytest

from engine.decoding.generation import next_token_distribution
from engine.using.chat_template import render
from engine.using.constitution import (PRINCIPLES, Verdict, changed_share, judge, judge_messages, preference_pair,
                                       principle_by_name, run_constitution)


def test_verdict_score_and_fallbacks():
    assert Verdict("", 0.03, 0.36).score == pytest.approx(0.03 / 0.39)
    assert Verdict("", 0.0, 0.0).score == 0.5
    assert principle_by_name("nope") is PRINCIPLES[0] and principle_by_name("Be concise").name == "Be concise"


def test_changed_share(lm):
    assert changed_share(lm, "The cat sat.", "The cat sat.") == 0.0
    assert changed_share(lm, "", "") == 0.0
    assert changed_share(lm, "The cat sat.", "Dogs run fast everywhere!") > 0.5


def test_judge_reads_one_forward_pass(lm):
    verdict = judge(lm, "What is 2 + 2?", "4.", PRINCIPLES[1])
    p = next_token_distribution(lm, render(lm, judge_messages("What is 2 + 2?", "4.", PRINCIPLES[1]))).probabilities
    yes_id = lm.tokenizer.encode("Yes", add_special_tokens=False)[0]
    assert verdict.p_yes >= p[yes_id] and 0 < verdict.p_yes + verdict.p_no <= 1


def test_loop_is_bounded_chained_and_stoppable(lm):
    run = run_constitution(lm, "Say hi.", PRINCIPLES[1], 8, 60)
    assert run.complete and all(len(g.new_ids) <= 8 for g in (run.answer, run.critique, run.revision))
    assert run.answer.text.strip() in run.critique.prompt and run.critique.text.strip() in run.revision.prompt
    assert run.revision_won == (run.revised_verdict.score > run.original_verdict.score)
    assert preference_pair(run)["rejected"] == run.answer.text.strip()
    stopped = run_constitution(lm, "Say hi.", PRINCIPLES[1], 8, 60, should_stop=lambda: True)
    assert stopped.critique is None and not stopped.complete and stopped.revision_won is None
    assert np.isfinite(run.changed)
