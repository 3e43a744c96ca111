"""The prompting page's model work: one text scored at once (cached), the labelled set and the sweeps as jobs.

Scored conditions (a task, its answer words, one exact list of demonstrations) are kept process-wide in a small
bounded store, so the sweep reuses what the labelled-set job already scored and two seeds that give the same
order share one result. Jobs are keyed by their inputs: a shared link joins or reads the same run.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st

from engine.runtime.bounded import BoundedLRU
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.model.live_model import LiveModel
from engine.using.prompting import (Condition, ItemScores, ReasoningRun, choose_demonstrations, load_questions,
                              load_tasks, reason, score_condition, score_text)
from engine.tokens.offsets import decode_each
from ui.models import lm

SET_BUDGET_S = 120
SWEEP_BUDGET_S = 300
REASONING_BUDGET_S = 180
SWEEP_SHOTS = (0, 1, 2, 4, 8)
SWEEP_SEEDS = (0, 1, 2, 3)
REASONING_TOKENS = 96      # longest reply generated for chain of thought
REASONING_TEMPERATURE = 0.7


@st.cache_data(max_entries=128, show_spinner=False)
def text_scores(task_key: str, verbalizer: str, k: int, seed: int, text: str) -> ItemScores:
    """The reader's text scored under k demonstrations in the seed's order (two small passes)."""
    return score_text(lm(), load_tasks()[task_key], verbalizer, k, seed, text)


class _ConditionStore(BoundedLRU):
    """Scored conditions by (task, answer words, exact demonstrations), least recently used out first.

    A condition being scored is claimed, so a second job that needs it (the sweep, while the labelled-set job
    scores the same zero-shot prompt) waits for it instead of scoring it again on the shared CPU.
    """

    def __init__(self, max_entries: int = 96):
        super().__init__(max_entries)
        self._pending: dict = {}
        self._claims = threading.Lock()

    def claim(self, key) -> threading.Event | None:
        """None if the caller now owns `key` (it must `release` it); else the event its owner will set."""
        with self._claims:
            if key in self._pending:
                return self._pending[key]
            self._pending[key] = threading.Event()
            return None

    def release(self, key) -> None:
        with self._claims:
            event = self._pending.pop(key, None)
        if event is not None:
            event.set()


@st.cache_resource(show_spinner=False)
def _store() -> _ConditionStore:
    return _ConditionStore()


def _condition(model: LiveModel, store: _ConditionStore, task_key: str, verbalizer: str, k: int, seed: int,
               on_item: Callable[[int, int], None], should_stop: Callable[[], bool]) -> Condition | None:
    task = load_tasks()[task_key]
    key = (task_key, task.words(verbalizer), choose_demonstrations(task, k, seed))
    hit = store.get(key)
    if hit is not None:
        # The same prompt reached through another seed: same scores, recorded under this seed.
        return hit if hit.seed == seed else Condition(hit.k, seed, hit.demonstrations, hit.items,
                                                      hit.content_free, hit.labels)
    owner = store.claim(key)
    if owner is not None:   # another job is scoring this very prompt: wait for it, then read its result
        while not owner.wait(0.25):
            if should_stop():
                return None
        return _condition(model, store, task_key, verbalizer, k, seed, on_item, should_stop)
    try:
        scored = score_condition(model, task, verbalizer, k, seed, on_item, should_stop)
        if scored is not None:
            store.put(key, scored)
        return scored
    finally:
        store.release(key)


@dataclass(frozen=True)
class SetResult:
    zero_shot: Condition
    few_shot: Condition


def set_job(task_key: str, verbalizer: str, k: int, seed: int, again: bool = False) -> Job:
    """Zero-shot and k-shot scoring of the whole labelled set (every item, every choice)."""
    model, store = lm(), _store()

    def work(ctx: JobContext) -> SetResult | None:
        parts = [(0, 0, "zero-shot"), (k, seed, f"{k}-shot")]
        done = []
        for n, (shots, s, name) in enumerate(parts):
            def on_item(i: int, total: int, n=n, name=name) -> None:
                ctx.report((n + i / total) / len(parts), f"Scoring the set {name}: item {i} of {total}")
            condition = _condition(model, store, task_key, verbalizer, shots, s, on_item, ctx.should_stop)
            if condition is None:
                return None
            done.append(condition)
        return SetResult(*done)

    return job_registry().submit(("prompting set", task_key, verbalizer, int(k), int(seed)), work,
                                 title="Scoring the labelled set", budget_s=SET_BUDGET_S, fresh=again)


def sweep_plan(task_key: str) -> list[tuple[int, int]]:
    """(k, seed) pairs of the sweep, one per distinct prompt: k = 0 has one order, k = 1 one, k = 2 two."""
    task = load_tasks()[task_key]
    plan, seen = [], set()
    for k in SWEEP_SHOTS:
        for seed in SWEEP_SEEDS:
            demos = choose_demonstrations(task, k, seed)
            if demos not in seen:
                seen.add(demos)
                plan.append((k, seed))
    return plan


def sweep_job(task_key: str, verbalizer: str) -> Job:
    """Every (k, order) of the sweep plan scored over the set; stopping keeps the conditions finished so far."""
    model, store = lm(), _store()
    plan = sweep_plan(task_key)

    def work(ctx: JobContext) -> tuple[Condition, ...]:
        done = []
        for n, (k, seed) in enumerate(plan):
            def on_item(i: int, total: int, n=n, k=k, seed=seed) -> None:
                ctx.report((n + i / total) / len(plan),
                           f"Prompt {n + 1} of {len(plan)} (k = {k}, order seed {seed}): item {i} of {total}")
            condition = _condition(model, store, task_key, verbalizer, k, seed, on_item, ctx.should_stop)
            if condition is None:
                break
            done.append(condition)
        return tuple(done)

    return job_registry().submit(("prompting sweep", task_key, verbalizer, tuple(plan)), work,
                                 title="Shots and orders sweep", budget_s=SWEEP_BUDGET_S)


def reasoning_job(question: int, samples: int, temperature: float, max_tokens: int, seed: int) -> Job:
    """Direct, step-by-step and sampled step-by-step replies to one bundled question."""
    model = lm()
    q = load_questions()[question]

    def work(ctx: JobContext) -> ReasoningRun:
        def on_step(done: int, total: int, what: str) -> None:
            ctx.report(done / total, f"Generating {what} ({done + 1} of {total})")
        return reason(model, q, samples, temperature, max_tokens, seed, on_step, ctx.should_stop)

    key = ("prompting reasoning", question, int(samples), round(float(temperature), 2), int(max_tokens), int(seed))
    return job_registry().submit(key, work, title="Chain of thought", budget_s=REASONING_BUDGET_S)


def set_table(condition: Condition, words, normalise: bool, calibrate: bool) -> pd.DataFrame:
    """One row per item: every answer's score, the prediction (calibrated if asked) and whether it is right."""
    rows = {"item": range(1, len(condition.items) + 1), "text": [it.text for it in condition.items],
            "true label": [it.label for it in condition.items]}
    for j, w in enumerate(words):
        rows[f"score: {w}"] = [round(float(it.scores(normalise)[j]), 4) for it in condition.items]
    if calibrate:   # the content-free input's score subtracted: the numbers the calibrated prediction compares
        free = condition.content_free.scores(normalise)
        for j, w in enumerate(words):
            rows[f"calibrated: {w}"] = [round(float(it.scores(normalise)[j] - free[j]), 4) for it in condition.items]
    predicted = condition.predictions(normalise, calibrate)
    rows["predicted"] = [condition.labels[p] for p in predicted]
    rows["correct"] = [condition.labels[p] == it.label for p, it in zip(predicted, condition.items)]
    return pd.DataFrame(rows)


def choice_rows(conditions: list[tuple[str, ItemScores]], words) -> list[dict]:
    """The numbers behind the one-text chart: each answer's tokens, their ln p, summed and per token."""
    model = lm()
    return [{"prompt": name, "answer": w, "tokens": " | ".join(decode_each(model, list(cs.token_ids))),
             "token_logprobs": " ".join(f"{x:.4f}" for x in cs.token_logprobs),
             "summed": cs.summed, "per_token": cs.normalised}
            for name, item in conditions for w, cs in zip(words, item.choices)]
