"""RLHF on the rlhf page: the policy's samples for the reader's question (a job keyed by question and seed, with
their MiniLM embeddings and judge scores), the reference's first-token distribution (cached), and the reward
model fitted on the reader's labels (cheap numpy on the job's result)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.model.encoder import embed_sentences
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.training.reward_model import Samples, judge_scores, sample_batch
from engine.using.chat_template import chat_messages, render
from ui.models import encoder, lm

POOL = 32              # samples per question: best-of-n runs up to n = POOL
ANSWER_TOKENS = 24
SAMPLE_TEMPERATURE = 1.0
PAIRS = 6              # the first 2 * PAIRS samples are shown as pairs to label
RUN_BUDGET_S = 150


@dataclass(frozen=True, eq=False)
class Pool:
    chat_text: str
    samples: Samples
    embeddings: np.ndarray        # [POOL, 384] unit vectors
    question_embedding: np.ndarray
    judge: np.ndarray             # [POOL] fixed judge scores

    @property
    def size(self) -> int:
        return len(self.samples.texts)


def chat_text(question: str) -> str:
    return _chat_text(question)


@st.cache_data(max_entries=64, show_spinner=False)
def _chat_text(question: str) -> str:
    return render(lm(), chat_messages("", question))


def pool_job(question: str, seed: int) -> Job:
    """POOL samples of the answer to `question`, drawn together, then embedded and judged."""
    model, enc = lm(), encoder()
    text = chat_text(question)

    def work(ctx: JobContext) -> Pool:
        ctx.report(0.0, f"Sampling {POOL} answers at once...")
        samples = sample_batch(model, text, POOL, ANSWER_TOKENS, temperature=SAMPLE_TEMPERATURE, seed=seed,
                               should_stop=ctx.should_stop,
                               on_step=lambda done, total: ctx.report(0.9 * done / total,
                                                                      f"Sampling {POOL} answers: token {done} of "
                                                                      f"{total}"))
        ctx.report(0.92, "Embedding the answers with MiniLM...")
        vectors = embed_sentences(enc, list(samples.texts) + [question])
        answers, asked = vectors[:-1], vectors[-1]
        return Pool(chat_text=text, samples=samples, embeddings=answers, question_embedding=asked,
                    judge=judge_scores(answers, asked, list(samples.texts)))

    return job_registry().submit(("rlhf-pool", question, int(seed)), work, title="RLHF samples",
                                 budget_s=RUN_BUDGET_S)


@st.cache_data(max_entries=64, show_spinner=False)
def first_token_logits(question: str) -> np.ndarray:
    """The reference's logits for the first token of its answer: one forward pass of the chat."""
    from engine.decoding.generation import next_token_distribution

    return next_token_distribution(lm(), chat_text(question)).logits
