"""SFT on the sft page: the reader's pairs, the template's tokens and labels with their losses (cached), and the
SFT steps as a job keyed by the pairs, the labelling and the settings."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import decode_each
from engine.training.sft import SftRun, masked_mean, sft_example, sft_steps, token_losses_and_model_loss
from ui.models import lm

MAX_PAIRS = 4
RUN_BUDGET_S = 90


def parse_pairs(text: str) -> tuple[tuple[tuple[str, str], ...], int]:
    """'question | answer' per line, at most MAX_PAIRS; and how many lines had no '|' or an empty side."""
    lines = [line for line in text.splitlines() if line.strip()]
    pairs = []
    for line in lines:
        question, bar, answer = line.partition("|")
        if bar and question.strip() and answer.strip():
            pairs.append((question.strip(), answer.strip()))
    return tuple(dict.fromkeys(pairs))[:MAX_PAIRS], len(lines) - len(pairs)


@st.cache_data(max_entries=32, show_spinner=False)
def labelled_chat(user: str, answer: str, mode: str) -> dict:
    """The chat's tokens, labels, per-token loss (shared model), our masked mean, and transformers' own loss."""
    model = lm()
    example = sft_example(model, user, answer, mode)
    losses, theirs = token_losses_and_model_loss(model, example)
    return dict(ids=example.ids, labels=example.labels, pieces=tuple(decode_each(model, list(example.ids))),
                prompt_len=example.prompt_len, end_index=example.end_index, losses=losses,
                ours=masked_mean(losses, example), theirs=theirs)


def sft_job(pairs: tuple[tuple[str, str], ...], mode: str, steps: int, lr: float, again: bool = False) -> Job:
    model = lm()

    def work(ctx: JobContext) -> SftRun:
        ctx.report(0.0, "Copying the last block...")

        def on_step(step: int, total: int, loss: float) -> None:
            ctx.report(step / total, f"Step {step} of {total} · loss on the labelled tokens {loss:.3f} nats")

        examples = [sft_example(model, q, a, mode) for q, a in pairs]
        return sft_steps(model, examples, steps=steps, lr=lr, on_step=on_step, should_stop=ctx.should_stop)

    return job_registry().submit(("sft", pairs, mode, steps, lr), work, title="SFT steps", budget_s=RUN_BUDGET_S,
                                 fresh=again)
