"""The prompt-injection page's model work: classifier screenings, rendered chats and teacher-forced probabilities
(cached by their texts, so a defence toggle that shows a setting already measured runs no model), and the
sampled answers as a job."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.runtime.bounded import BoundedLRU
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.using.chat_template import RenderedChat, render, render_tokens
from engine.using.prompt_injection import (Defences, SampledComparison, Screening, continuation_logprobs,
                                           messages_for, sample_settings, screen)
from ui.models import encoder, lm

SAMPLE_BUDGET_S = 150
SAMPLE_SEED = 0
MAX_FORCED = 512


@st.cache_data(max_entries=64, show_spinner=False)
def screening(document: str, threshold: float) -> Screening:
    return screen(encoder(), document, threshold)


@st.cache_data(max_entries=256, show_spinner=False)
def prompt_text(user_content: str) -> str:
    """The rendered chat (template default system turn, the user's turn, the assistant's turn opened)."""
    return render(lm(), [{"role": "user", "content": user_content}])


@st.cache_data(max_entries=32, show_spinner=False)
def role_tokens(user_content: str) -> RenderedChat:
    return render_tokens(lm(), [{"role": "user", "content": user_content}])


@dataclass(frozen=True)
class Setting:
    """One defence setting's two prompts, rendered: the attacked document and the clean one."""
    defences: Defences
    attacked_user: str
    clean_user: str

    @property
    def attacked_prompt(self) -> str:
        return prompt_text(self.attacked_user)

    @property
    def clean_prompt(self) -> str:
        return prompt_text(self.clean_user)


def setting(defences: Defences, attacked_doc: str, clean_doc: str, threshold: float) -> Setting:
    attacked = messages_for(attacked_doc, defences, screening(attacked_doc, threshold) if defences.classifier else None)
    clean = messages_for(clean_doc, defences, screening(clean_doc, threshold) if defences.classifier else None)
    return Setting(defences, attacked[0]["content"], clean[0]["content"])


@st.cache_resource(max_entries=1)
def _forced_store() -> BoundedLRU:
    return BoundedLRU(MAX_FORCED)


def forced_logprobs(pairs: list[tuple[str, str]]) -> list[np.ndarray]:
    """Per-token log-probabilities of each continuation after its prompt; the pairs not yet known to this server
    are measured together in one batched pass, the rest read from a bounded store (read-only arrays)."""
    store = _forced_store()
    known = {pair: store.get(pair) for pair in dict.fromkeys(pairs)}
    missing = [pair for pair, value in known.items() if value is None]
    if missing:
        for pair, value in zip(missing, continuation_logprobs(lm(), missing)):
            value.setflags(write=False)
            store.put(pair, value)
            known[pair] = value
    return [known[pair] for pair in pairs]


def sampling_job(settings: list[Setting], marker: str, keyword: str, n: int, max_new_tokens: int) -> Job:
    model = lm()
    prompts = [(s.defences, s.attacked_prompt, s.clean_prompt) for s in settings]

    def work(ctx: JobContext) -> SampledComparison:
        return sample_settings(model, prompts, marker, keyword, n, max_new_tokens, SAMPLE_SEED,
                               should_stop=ctx.should_stop,
                               on_step=lambda fraction, what: ctx.report(fraction, f"Sampling: {what}..."))

    key = ("prompt injection samples", tuple(prompts), marker, keyword, int(n), int(max_new_tokens))
    return job_registry().submit(key, work, title="Sampled answers under each defence", budget_s=SAMPLE_BUDGET_S)
