"""LoRA on the lora page: the facts a reader writes, the model's own probabilities for their answers (cached),
peft's parameter count for a rank and targets (cached), and the training run as a job keyed by its settings."""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import decode_each, token_ids
from engine.training.top_tuning import Fact, LoraRun, block_parameters, frozen_input, lora_parameter_formula, \
    lora_stack, make_example, split_fact, train_lora
from ui.models import lm

MAX_FACTS = 5
RUN_BUDGET_S = 90


def parse_facts(text: str) -> tuple[tuple[Fact, ...], int]:
    """The facts, one per line (the last word is the answer), at most MAX_FACTS; and how many lines were skipped
    (a single word has no prompt to answer)."""
    lines = [line for line in text.splitlines() if line.strip()]
    facts = [f for f in (split_fact(line) for line in lines) if f is not None]
    return tuple(dict.fromkeys(facts))[:MAX_FACTS], len(lines) - len(facts)


@st.cache_data(max_entries=64, show_spinner=False)
def answer_before(prompt: str, answer: str, blocks: int) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The answer's tokens and the model's own probability of each (one pass, whose frozen part is also the
    training input of the run with this many top blocks)."""
    model = lm()
    example = make_example(Fact(prompt, answer), lambda t: token_ids(model, t))
    frozen = frozen_input(model, example.ids, model.card.layers - blocks)
    probs = np.exp(frozen.model_logprobs[example.answer_start - 1:])
    return tuple(decode_each(model, list(example.answer_ids))), tuple(float(p) for p in probs)


@st.cache_data(max_entries=64, show_spinner=False)
def adapter_counts(rank: int, targets: tuple[str, ...], blocks: int) -> dict:
    """peft's own count of trainable parameters of the adapter (built on a private copy), the r * (d_in + d_out)
    formula, and the parameters of the same blocks (full fine-tuning)."""
    model = lm()
    trainable, total = lora_stack(model, blocks, rank, targets).get_nb_trainable_parameters()
    return dict(peft=trainable, formula=lora_parameter_formula(model, blocks, rank, targets),
                full=block_parameters(model, blocks), model=sum(p.numel() for p in model.model.parameters()))


def lora_job(facts: tuple[Fact, ...], control: Fact | None, rank: int, targets: tuple[str, ...], blocks: int,
             steps: int, lr: float, again: bool = False) -> Job:
    """The LoRA run for these settings: running, stored, or started now."""
    model = lm()   # loaded in the page's run, where loading can show progress

    def work(ctx: JobContext) -> LoraRun:
        ctx.report(0.0, "Copying the top block(s) and attaching the adapter...")

        def on_step(step: int, total: int, loss: float) -> None:
            ctx.report(step / total, f"Step {step} of {total} · loss on the answers {loss:.3f} nats")

        return train_lora(model, list(facts), control, rank=rank, targets=targets, blocks=blocks, steps=steps, lr=lr,
                          on_step=on_step, should_stop=ctx.should_stop)

    key = ("lora", facts, control, rank, targets, blocks, steps, lr)
    return job_registry().submit(key, work, title="LoRA training", budget_s=RUN_BUDGET_S, fresh=again)
