"""Constitutional AI's supervised step, run by the live model: answer, critique against a principle, revise.

Bai et al. 2022 ("Constitutional AI: Harmlessness from AI Feedback") made harmlessness training data without human
labels of harm. The model answers a prompt; it is then asked, in the same conversation, to critique its answer
against one principle of a written constitution, and then to rewrite the answer in light of the critique. The
(original, revised) pair is a preference pair: the revision is meant to be the better answer. The paper fine-tunes
on the revisions (SL-CAI), then has a model pick the better of two samples by a principle to train a preference
model for RL (RLAIF).

Here every step is one bounded greedy generation in SmolLM2's chat template, and every prompt is kept so the page
can show it whole. The judge is deliberately simple and transparent: the same model is asked "Does the answer
follow the principle? Answer Yes or No." and the judge score is p(Yes) / (p(Yes) + p(No)) for its first reply
token, read off one forward pass. Bai et al.'s feedback model likewise compares normalised probabilities of answer
options; theirs was a 52B model, ours is the 135M one being judged, so the score says as much about the judge's
biases (e.g. a taste for "Yes") as about the answers.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from engine.decoding.bounded_generation import BoundedGeneration, generate_bounded
from engine.decoding.generation import next_token_distribution
from engine.model.live_model import LiveModel
from engine.using.chat_template import render


@dataclass(frozen=True)
class Principle:
    name: str
    rule: str              # the principle as the judge reads it
    critique: str          # the critique request (after the answer)
    revision: str          # the revision request (after the critique)


PRINCIPLES = (
    Principle("Be harmless", "The answer must not help anyone cause harm, and must avoid dangerous or unethical "
                             "advice.",
              "Identify specific ways in which your last answer is harmful, unethical, dangerous or illegal.",
              "Rewrite your answer to remove anything harmful, unethical, dangerous or illegal. Give only the new "
              "answer."),
    Principle("Be concise", "The answer must be short and to the point, with no filler.",
              "Identify the parts of your last answer that are unnecessary, repeated or too long.",
              "Rewrite your answer in at most two short sentences. Give only the new answer."),
    Principle("Avoid jargon", "The answer must use plain words a child could understand, with no technical "
                              "terms.",
              "Identify every technical term or jargon word in your last answer that a child would not "
              "understand.",
              "Rewrite your answer in plain words a child could understand. Give only the new answer."),
    Principle("Be polite", "The answer must be kind and respectful, with no insults or rudeness.",
              "Identify anything rude, insulting or unkind in your last answer.",
              "Rewrite your answer so that it is kind and respectful. Give only the new answer."),
)
JUDGE_QUESTION = "Does the answer follow the principle? Answer Yes or No."


def answer_messages(request: str) -> list[dict]:
    return [{"role": "user", "content": request}]


def critique_messages(request: str, answer: str, principle: Principle) -> list[dict]:
    return answer_messages(request) + [{"role": "assistant", "content": answer},
                                       {"role": "user", "content": principle.critique}]


def revision_messages(request: str, answer: str, critique: str, principle: Principle) -> list[dict]:
    return critique_messages(request, answer, principle) + [{"role": "assistant", "content": critique},
                                                           {"role": "user", "content": principle.revision}]


def judge_messages(request: str, answer: str, principle: Principle) -> list[dict]:
    return [{"role": "user", "content": f"Principle: {principle.rule}\n\nQuestion: {request}\n\nAnswer: {answer}"
                                        f"\n\n{JUDGE_QUESTION}"}]


@dataclass(frozen=True)
class Verdict:
    """The judge's first reply token: how much probability goes to Yes and to No."""
    prompt: str
    p_yes: float          # summed over the spellings "Yes", " Yes", "yes", " yes"
    p_no: float

    @property
    def score(self) -> float:
        """p(Yes) / (p(Yes) + p(No)): the judge's yes-share, 0.5 if it favours neither."""
        total = self.p_yes + self.p_no
        return self.p_yes / total if total > 0 else 0.5


def _word_ids(lm: LiveModel, words: tuple[str, ...]) -> list[int]:
    """Single-token spellings of a word (a spelling that splits into several tokens is left out)."""
    ids = []
    for w in words:
        with lm.tokenizing() as tok:
            enc = tok.encode(w, add_special_tokens=False)
        if len(enc) == 1 and enc[0] not in ids:
            ids.append(enc[0])
    return ids


def judge(lm: LiveModel, request: str, answer: str, principle: Principle) -> Verdict:
    prompt = render(lm, judge_messages(request, answer, principle))
    p = next_token_distribution(lm, prompt).probabilities
    yes = _word_ids(lm, ("Yes", " Yes", "yes", " yes", "YES"))
    no = _word_ids(lm, ("No", " No", "no", " no", "NO"))
    return Verdict(prompt, float(p[yes].sum()), float(p[no].sum()))


def changed_share(lm: LiveModel, before: str, after: str) -> float:
    """The share of tokens the revision changed: 1 - difflib's similarity ratio of the two token sequences."""
    from engine.tokens.offsets import token_ids
    a, b = token_ids(lm, before) if before else [], token_ids(lm, after) if after else []
    if not a and not b:
        return 0.0
    return 1.0 - difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()


@dataclass(frozen=True)
class ConstitutionRun:
    request: str
    principle: Principle
    answer: BoundedGeneration
    critique: BoundedGeneration | None          # None when stopped before this step
    revision: BoundedGeneration | None
    original_verdict: Verdict | None
    revised_verdict: Verdict | None
    changed: float | None                       # share of the answer's tokens the revision changed

    @property
    def complete(self) -> bool:
        return self.revised_verdict is not None

    @property
    def revision_won(self) -> bool | None:
        if not self.complete:
            return None
        return self.revised_verdict.score > self.original_verdict.score


STEPS = 5   # answer, critique, revision, two verdicts


def run_constitution(lm: LiveModel, request: str, principle: Principle, max_new_tokens: int, budget_s: float,
                     on_step: Callable[[int, str], None] = lambda done, what: None,
                     should_stop: Callable[[], bool] = lambda: False) -> ConstitutionRun:
    """The whole loop, each generation bounded by `max_new_tokens` and `budget_s`; stops early when asked."""
    on_step(0, "writing the first answer")
    answer = generate_bounded(lm, render(lm, answer_messages(request)), max_new_tokens, budget_s, should_stop)
    critique = revision = original = revised = changed = None
    if not should_stop():
        on_step(1, f"critiquing the answer against “{principle.name}”")
        critique = generate_bounded(lm, render(lm, critique_messages(request, answer.text.strip(), principle)),
                                    max_new_tokens, budget_s, should_stop)
    if critique is not None and not should_stop():
        on_step(2, "revising the answer in light of the critique")
        revision = generate_bounded(lm, render(lm, revision_messages(request, answer.text.strip(),
                                                                     critique.text.strip(), principle)),
                                    max_new_tokens, budget_s, should_stop)
    if revision is not None and not should_stop():
        on_step(3, "judging the original answer")
        original = judge(lm, request, answer.text.strip(), principle)
        on_step(4, "judging the revised answer")
        revised = judge(lm, request, revision.text.strip(), principle)
        changed = changed_share(lm, answer.text.strip(), revision.text.strip())
    return ConstitutionRun(request, principle, answer, critique, revision, original, revised, changed)


def preference_pair(run: ConstitutionRun) -> dict:
    """The pair as a preference dataset stores it: the revision is 'chosen' by construction, as in CAI's SL stage."""
    return {"prompt": run.request, "chosen": run.revision.text.strip() if run.revision else None,
            "rejected": run.answer.text.strip(), "principle": run.principle.name,
            "judge_agrees": run.revision_won}


def principle_by_name(name: str | None) -> Principle:
    return next((p for p in PRINCIPLES if p.name == name), PRINCIPLES[0])

