"""DPO on the dpo page: the reader's (prompt, chosen, rejected) triples, the reference's per-token log-probabilities
(cached: one forward pass per answer), and the DPO steps as a job keyed by the triples and the settings."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.tokens.offsets import decode_each, visible
from engine.training.dpo import MAX_PAIRS, DpoRun, answer_positions, dpo_steps, preference_pair, \
    reference_token_logprobs
from ui.models import lm

RUN_BUDGET_S = 120
TRAINED_BLOCKS = 2

Triple = tuple[str, str, str]


def parse_triples(text: str) -> tuple[tuple[Triple, ...], int]:
    """'prompt | chosen | rejected' per line, at most MAX_PAIRS; and how many lines were not of that shape."""
    lines = [line for line in text.splitlines() if line.strip()]
    triples = []
    for line in lines:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and all(parts) and parts[1] != parts[2]:
            triples.append(tuple(parts))
    return tuple(dict.fromkeys(triples))[:MAX_PAIRS], len(lines) - len(triples)


@st.cache_data(max_entries=64, show_spinner=False)
def reference_view(prompt: str, chosen: str, rejected: str) -> dict:
    """Per answer (chosen, rejected): its tokens as shown and the reference's log-probability of each."""
    model = lm()
    pair = preference_pair(model, prompt, chosen, rejected)
    view = {}
    for name, example in (("chosen", pair.chosen), ("rejected", pair.rejected)):
        ids = [example.ids[t] for t in answer_positions(example)]
        view[name] = dict(tokens=[visible(p) for p in decode_each(model, ids)],
                          logprobs=reference_token_logprobs(model, example))
    return view


def dpo_job(triples: tuple[Triple, ...], beta: float, steps: int, lr: float, again: bool = False) -> Job:
    model = lm()

    def work(ctx: JobContext) -> DpoRun:
        ctx.report(0.0, "Copying the top blocks and running the frozen ones once...")

        def on_step(step: int, total: int, loss: float) -> None:
            ctx.report(step / total, f"Step {step} of {total} · mean DPO loss before the step {loss:.4f}")

        pairs = [preference_pair(model, *t) for t in triples]
        return dpo_steps(model, pairs, beta=beta, steps=steps, lr=lr, blocks=TRAINED_BLOCKS, on_step=on_step,
                         should_stop=ctx.should_stop)

    return job_registry().submit(("dpo", triples, beta, steps, lr), work, title="DPO steps", budget_s=RUN_BUDGET_S,
                                 fresh=again)
