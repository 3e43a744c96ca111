"""Cached FFN-neuron computations for the feed-forward page, keyed by text and numbers only.

One traced pass per (text, layer) keeps the layer's four [T, 1,536] arrays (under 2 MB for 64 tokens) in a
bounded resource cache; moving the token, the neuron or the measure only reads them. The corpus index of a
layer takes seconds (one pass per corpus document), so it is a job keyed by the layer: built once per layer
on demand, shared by every reader, kept in the job registry's bounded store.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.inside.neurons import (CorpusIndex, FfnActivations, LogitEffect, ParameterSplit, ablate, build_corpus_index,
                            ffn_activations, load_corpus, logit_effect, parameter_split, random_neurons)
from engine.tokens.offsets import token_ids
from ui.models import lm

MAX_TOKENS = 64        # one bar per token in the "along your text" chart stays readable
CORPUS_BUDGET_S = 180  # a late layer takes about 5-8 s on two cores; the budget only guards a crowded server
SHOWN_TOKENS = 8       # next-token bars in the silencing chart


@st.cache_resource(max_entries=16, show_spinner=False)
def activations(text: str, layer: int) -> FfnActivations:
    """Layer `layer` (0-based) of the text's traced pass: gate, up, SiLU(gate) and product at every token."""
    return ffn_activations(lm(), token_ids(lm(), text), layer)


@dataclass(frozen=True)
class Silencing:
    """What the page shows of an ablation and its random control (the full distributions are not kept)."""
    ids: tuple[int, ...]           # the intact model's most likely next tokens
    intact: np.ndarray             # their probabilities, intact
    silenced: np.ndarray           # ... with the chosen neurons silenced
    control: np.ndarray            # ... with as many random neurons of the layer silenced
    kl_bits: float
    control_kl_bits: float
    silenced_top_id: int           # the favourite after silencing
    silenced_top_probability: float
    control_neurons: tuple[int, ...]


@st.cache_data(max_entries=128, show_spinner=False)
def silencing(text: str, layer: int, position: int, neurons: tuple[int, ...]) -> Silencing:
    """Silence `neurons` of `layer` (0-based) everywhere; read the next-token distribution after `position`."""
    control = random_neurons(layer, len(neurons), lm().card.ffn_dim, avoid=frozenset(neurons))
    chosen, rand = ablate(lm(), token_ids(lm(), text), position, frozenset((layer, n) for n in neurons),
                          frozenset((layer, n) for n in control))
    ids = np.argsort(-chosen.base, kind="stable")[:SHOWN_TOKENS]
    return Silencing(ids=tuple(int(i) for i in ids), intact=chosen.base[ids], silenced=chosen.ablated[ids],
                     control=rand.ablated[ids], kl_bits=chosen.kl_bits, control_kl_bits=rand.kl_bits,
                     silenced_top_id=chosen.ablated_top_id,
                     silenced_top_probability=float(chosen.ablated[chosen.ablated_top_id]),
                     control_neurons=tuple(sorted(control)))


@st.cache_data(max_entries=64, show_spinner=False)   # 49,152 scores each: about 200 kB
def written(layer: int, neuron: int) -> LogitEffect:
    return logit_effect(lm(), layer, neuron)


@st.cache_data(max_entries=1, show_spinner=False)
def split() -> ParameterSplit:
    return parameter_split(lm())


def corpus_job(layer: int, again: bool = False) -> Job:
    """The corpus index of `layer` (0-based): stored, being built, or started now (`again`: read it anew)."""
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on
    documents = load_corpus()

    def work(ctx: JobContext) -> CorpusIndex:
        def on_document(done: int, total: int, title: str) -> None:
            ctx.report(done / total, f"Reading corpus document {done + 1} of {total} ({title}) through "
                                     f"layer {layer + 1}...")

        return build_corpus_index(model, layer, documents, on_document=on_document, should_stop=ctx.should_stop)

    return job_registry().submit(("ffn corpus index", layer), work, title="FFN neuron corpus index",
                                 budget_s=CORPUS_BUDGET_S, fresh=again)
