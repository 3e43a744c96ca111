"""The vector-search page's sets of vectors, cached query vectors, and its measuring job.

Two real sets: SmolLM2's 49,152 token embedding rows (read from the live model, normalised once and shared with
the token-embeddings page) and the handbook's chunk vectors from MiniLM. A job builds the chosen faiss index
(kept in engine.retrieval.ann's bounded store, so the reader's own query can be searched at once afterwards)
and measures recall@k and queries per second over the whole search grid; it is keyed by the set, the index and
k, so moving the search setting only picks another measured point and runs no job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import streamlit as st

from engine.inside.embeddings import embedding_matrix
from engine.runtime.jobs import Job, job_registry
from engine.retrieval.ann import BuiltIndex, IndexSpec, IndexStopped, Sweep, build_index, index_store, measure
from engine.retrieval.chunks import ChunkIndex
from engine.tokens.offsets import decode_each, token_ids, visible
from ui.embeddings import normalized_embeddings
from ui.models import lm

SWEEP_BUDGET_S = 300.0
TOKEN_SET_KEY = "smollm2-token-embeddings"


@dataclass(frozen=True, eq=False)
class VectorSet:
    key: str                       # names the vectors and their version, for jobs and the index store
    name: str
    unit: np.ndarray               # every row at length 1 (read-only): cosine is a dot product
    raw: np.ndarray                # the vectors as stored (token rows are not unit length)
    lengths: np.ndarray
    labels: Callable[[list[int]], list[str]]
    texts: Callable[[list[int]], list[str]]   # the full text behind each row (a token, or a chunk)


@st.cache_resource(max_entries=1, show_spinner=False)
def _token_lengths() -> np.ndarray:
    lengths = np.linalg.norm(embedding_matrix(lm()), axis=1)
    lengths.flags.writeable = False
    return lengths


def token_set() -> VectorSet:
    model = lm()

    def labels(ids: list[int]) -> list[str]:
        return [visible(t) for t in decode_each(model, ids)]

    return VectorSet(key=TOKEN_SET_KEY, name="SmolLM2's token embeddings", unit=normalized_embeddings(),
                     raw=embedding_matrix(model), lengths=_token_lengths(), labels=labels, texts=labels)


def chunk_set(index: ChunkIndex) -> VectorSet:
    chunks = index.chunks

    def labels(ids: list[int]) -> list[str]:
        return [f"{chunks[i].title} · {chunks[i].section} (#{i})" for i in ids]

    return VectorSet(key=index.key, name=f"The handbook's {index.size}-word chunks", unit=index.vectors,
                     raw=index.vectors, lengths=np.linalg.norm(index.vectors, axis=1), labels=labels,
                     texts=lambda ids: [chunks[i].text for i in ids])


@st.cache_data(max_entries=256, show_spinner=False)
def token_query(text: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """The query as SmolLM2 sees it: the mean of its tokens' embedding rows, and those token ids."""
    ids = tuple(token_ids(lm(), text))
    if not ids:
        return np.zeros(embedding_matrix(lm()).shape[1], dtype=np.float32), ()
    return embedding_matrix(lm())[list(ids)].astype(np.float64).mean(axis=0).astype(np.float32), ids


@dataclass(frozen=True)
class SweepStopped:
    """The reader (or the budget) stopped the build before the index was complete."""
    message: str


def sweep_job(vectors: VectorSet, spec: IndexSpec, k: int, fresh: bool = False) -> Job:
    unit, store_key = vectors.unit, (vectors.key, spec)

    def work(ctx) -> Sweep | SweepStopped:
        built = index_store().get(store_key)
        if built is None:
            try:
                built = build_index(unit, spec, progress=lambda f, m: ctx.report(0.75 * f, m),
                                    should_stop=ctx.should_stop)
            except IndexStopped as stopped:
                return SweepStopped(str(stopped))
            index_store().put(store_key, built)
        return measure(built, unit, k, progress=lambda f, m: ctx.report(0.75 + 0.25 * f, m),
                       should_stop=ctx.should_stop)

    return job_registry().submit(("vector-search sweep", vectors.key, spec, int(k)), work,
                                 title=f"{spec.kind.upper()} index", budget_s=SWEEP_BUDGET_S, fresh=fresh)


def built_index(vectors: VectorSet, spec: IndexSpec) -> BuiltIndex | None:
    return index_store().get((vectors.key, spec))


@st.cache_data(max_entries=8, show_spinner=False)
def _mean_direction_cosine(key: str, _unit: np.ndarray) -> float:
    mean = _unit.mean(axis=0)
    return float(np.mean(_unit @ (mean / max(float(np.linalg.norm(mean)), 1e-12))))


def mean_direction_cosine(vectors: VectorSet) -> float:
    """How much the set leans one way: the mean cosine of its vectors with their average direction."""
    return _mean_direction_cosine(vectors.key, vectors.unit)
