"""The sentence-embeddings page's cached model work, keyed by the sentences (strings) only, and its benchmark job.

SmolLM2's pooled states for every layer (three poolings, [31, n, 576] each) are computed in one pass and kept
read-only in a bounded resource cache, so moving the layer slider or switching the pooling runs no model.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine.inside.embeddings import pca
from engine.runtime.jobs import Job, JobContext, job_registry
from engine.inside.sentence_embeddings import (Benchmark, DecoderStates, decoder_states, encoder_vectors, parse_triples,
                                        run_benchmark)
from ui.models import encoder, lm


@st.cache_data(max_entries=64, show_spinner=False)
def minilm_vectors(sentences: tuple[str, ...]) -> np.ndarray:
    return encoder_vectors(encoder(), sentences)


@st.cache_resource(max_entries=32, show_spinner=False)
def smollm2_states(sentences: tuple[str, ...]) -> DecoderStates:
    return decoder_states(lm(), sentences)


BENCHMARK_BUDGET_S = 120.0


def benchmark_job(triples_text: str) -> Job:
    """The fixed benchmark as a job: a few seconds once per server (longer under load), then a stored result
    that every reader and share link gets at once."""
    model, enc = lm(), encoder()   # loaded here, in the page's run: the job's thread cannot show loading progress

    def work(ctx: JobContext) -> Benchmark:
        return run_benchmark(model, enc, parse_triples(triples_text), progress=ctx.report,
                             should_stop=ctx.should_stop)

    return job_registry().submit(("sentence-embeddings benchmark", triples_text), work,
                                 title="Paraphrase benchmark", budget_s=BENCHMARK_BUDGET_S)


def map_2d(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """PCA of the unit-length vectors (cosine geometry): coordinates and the variance the 2 axes keep."""
    x = np.asarray(vectors, dtype=np.float64)
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    coords, explained = pca(unit, 2)
    return coords, float(explained[:2].sum())
