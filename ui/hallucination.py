"""Cached greedy answers and the sampling job for the hallucination page (keys are strings and numbers only).

The greedy answer and its per-token confidence take one generation and one forward pass: cached and drawn at
once. Sampling several answers to two questions takes seconds to a minute on the CPU, so it runs as a job
keyed by everything that changes the samples (not the grouping threshold, which only regroups them).
"""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, job_registry
from engine.decoding.semantic_entropy import AnswerSamples, TokenConfidence, greedy_answer, question_prompt, sample_answers
from ui.models import encoder, lm

JOB_BUDGET_S = 180


@st.cache_data(max_entries=64, show_spinner=False)
def greedy_confidence(question: str, short: bool, max_new_tokens: int) -> TokenConfidence:
    return greedy_answer(lm(), question_prompt(lm(), question, short), max_new_tokens)


def sampling_job(questions: tuple[str, ...], short: bool, samples: int, max_new_tokens: int, temperature: float,
                 seed: int) -> Job:
    """`samples` answers to each question (answer i with seed + i), embedded by MiniLM, as one job."""
    model, enc = lm(), encoder()   # loaded here, in the page's run, where loading can show progress
    prompts = [question_prompt(model, q, short) for q in questions]
    total = samples * len(questions)

    def work(ctx) -> tuple[AnswerSamples, ...]:
        results = []
        for k, (question, prompt) in enumerate(zip(questions, prompts)):
            name = "AB"[k] if len(questions) == 2 else str(k + 1)

            def on_step(done: int, _total: int, k=k, name=name) -> None:
                ctx.report((k * samples + done) / total, f"Question {name}: answer {done} of {samples} sampled")

            results.append(sample_answers(model, enc, question, prompt, samples, max_new_tokens, temperature, seed,
                                          on_step=on_step, should_stop=ctx.should_stop))
        return tuple(results)

    key = ("hallucination samples", questions, bool(short), int(samples), int(max_new_tokens), float(temperature),
           int(seed))
    return job_registry().submit(key, work, title="answer sampling", budget_s=JOB_BUDGET_S)
