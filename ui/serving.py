"""Measurements and simulations shared by the serving pages (paged-attention, continuous-batching).

- the real answers whose lengths the simulations serve (assets/serving_answers.toml, written from the model);
- bytes per cached token, read from real cache tensors with the kv-cache page's own measurement;
- decode step times by batch size, timed once per server on the live model (about a second) and kept, so that
  a shared link shows the same timeline on this server;
- the parallel-sampling run, a job keyed by its inputs (it takes seconds).
The simulations themselves are cheap and pure; they are cached by their (plain) inputs.
"""
from __future__ import annotations

import math

import streamlit as st

from engine.serving.batching import Timeline, request_stream, simulate
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.serving.kv_allocator import Request, reservation
from engine.serving.kv_cache import CacheGrowth
from engine.tokens.tokenizers import chat_prompt
from engine.tokens.offsets import token_ids
from engine.serving.workload import AnswerSet, ParallelSamples, StepTimes, load_answers, measure_step_times, sample_in_parallel
from ui.kv_cache import cache_growth
from ui.models import lm


@st.cache_resource(show_spinner=False)
def answer_set() -> AnswerSet:
    return load_answers()


def answers_note() -> str:
    """Where the request lengths come from, said the same way on both serving pages."""
    answers = answer_set()
    capped = sum(not a.stopped for a in answers.answers)
    lengths = sorted(a.output_tokens for a in answers.answers)
    return (f"Request lengths are real: SmolLM2's greedy answers to {len(answers.answers)} bundled prompts, from "
            f"{lengths[0]} to {lengths[-1]} tokens, generated from this model on {answers.measured} "
            f"(scripts/measure_serving_answers.py; the tests regenerate some and compare). {capped} of them ran to "
            f"the {answers.max_new_tokens}-token cap: greedy decoding of a small model often repeats itself until "
            "stopped.")


def answer_shapes() -> list[tuple[int, int]]:
    return [(a.prompt_tokens, a.output_tokens) for a in answer_set().answers]


def drawn_requests(count: int, seed: int) -> list[Request]:
    """`count` requests drawn (seeded, with replacement) from the real answers, all starting together: the
    batching page's stream with every request arriving at once. The first n of a longer draw are the draw of n."""
    stream = request_stream(answer_shapes(), count, math.inf, seed)
    return [Request(r.id, r.prompt_tokens, r.output_tokens) for r in stream]


def reservations(requests: list[Request], mode: str) -> list[int]:
    return [reservation(r, mode, answer_set().max_new_tokens, lm().card.context_length) for r in requests]


def kv_growth() -> CacheGrowth:
    """The kv-cache page's measurement of the real cache tensors, on the first bundled prompt as the model reads it
    (its per-token bytes are what every figure here multiplies by)."""
    return cache_growth(chat_prompt(lm(), answer_set().answers[0].prompt))


@st.cache_resource(show_spinner="Timing decode steps of SmolLM2 at batch sizes 1 to 16...", max_entries=1)
def step_times() -> StepTimes:
    """Decode steps timed once per server process and kept: every reader (and every shared link) on this server
    sees the same timeline."""
    model = lm()
    return measure_step_times(model, token_ids(model, chat_prompt(model, answer_set().answers[-1].prompt)))


@st.cache_data(max_entries=64, show_spinner=False)
def timeline(policy: str, count: int, rate: float, seed: int, max_batch: int, measured_at: float) -> Timeline:
    """One policy's simulated timeline; `measured_at` keys it to the step-time measurement it used."""
    times = step_times()
    stream = request_stream(answer_shapes(), count, rate, seed)
    return simulate(policy, stream, max_batch, times.decode_step_s, times.prefill_time_s)


def samples_job(prompt: str, n: int, max_new_tokens: int, temperature: float, seed: int, budget_s: float) -> Job:
    """n sampled answers to the reader's prompt, decoded as one batch from one prefill: running, stored or new."""
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on
    ids = token_ids(model, chat_prompt(model, prompt))

    def work(ctx: JobContext) -> ParallelSamples:
        ctx.report(0.0, "Reading the prompt once...")

        def on_step(step: int, total: int, finished: int) -> None:
            ctx.report(step / total, f"Token {step} of at most {total}: {finished} of {n} samples have ended")

        return sample_in_parallel(model, ids, n, max_new_tokens, temperature=temperature, seed=seed,
                                  on_step=on_step, should_stop=ctx.should_stop)

    return job_registry().submit(("parallel samples", prompt, n, max_new_tokens, temperature, seed), work,
                                 title="Parallel samples", budget_s=budget_s)
