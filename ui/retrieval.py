"""The handbook's chunk index for the retrieval pages (vector-search, rag): loaded from disk when it was built
for the current text, else built as a job with progress, then kept in memory; and MiniLM query vectors.

The index is identified by the chunk size and a hash of every concept file's text (engine.retrieval.chunks),
so a page that lands or an edited paragraph makes a new index, built once by whichever reader asks first.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from engine.model.encoder import embed_sentences
from engine.runtime.jobs import Job, JobState, job_registry
from engine.retrieval.chunks import (BuildStopped, Chunk, ChunkIndex, build_chunk_index, chunk_corpus,
                                     corpus_fingerprint, load_chunk_index, read_concept_files)
from ui.jobs import follow
from ui.models import encoder

BUILD_BUDGET_S = 900.0   # the first build encodes every chunk: about a minute on two busy cores


def corpus() -> tuple[dict[str, str], str]:
    """The concept files now (read on every run: a few milliseconds) and their fingerprint."""
    files = read_concept_files()
    return files, corpus_fingerprint(files)


@st.cache_data(max_entries=8, show_spinner=False)
def chunks_for(size: int, fingerprint: str) -> tuple[Chunk, ...]:
    """The chunks alone (no encoder): cheap, for the chunking view drawn before any index exists."""
    return tuple(chunk_corpus(read_concept_files(), size))


@st.cache_resource(max_entries=6, show_spinner=False)
def _index_from_disk(size: int, fingerprint: str) -> ChunkIndex:
    index = load_chunk_index(size)
    if index is None or index.fingerprint != fingerprint:
        raise LookupError("not built yet")   # an exception is not cached: the next run looks again
    return index


REBUILD_FLAG = "_retrieval_rebuild"


def build_job(size: int, fingerprint: str, fresh: bool = False) -> Job:
    enc = encoder()   # loaded here, in the page's run: the job's thread has no page to show loading progress on

    def work(ctx) -> ChunkIndex | None:
        try:
            return build_chunk_index(lambda texts: embed_sentences(enc, texts), size, progress=ctx.report,
                                     should_stop=ctx.should_stop)
        except BuildStopped:
            return None   # a stop is an answer, not a failure: a failed job would start again at once

    return job_registry().submit(("retrieval chunk index", size, fingerprint), work,
                                 title=f"Chunk index ({size}-word chunks)", budget_s=BUILD_BUDGET_S, fresh=fresh)


def _ask_rebuild() -> None:
    st.session_state[REBUILD_FLAG] = True


def chunk_index(size: int, fingerprint: str) -> ChunkIndex | None:
    """The index, or None after drawing the build's progress (the page reruns itself when it is done)."""
    try:
        return _index_from_disk(size, fingerprint)
    except LookupError:
        pass
    job = build_job(size, fingerprint, fresh=bool(st.session_state.pop(REBUILD_FLAG, False)))
    built = follow(job, what=f"encoding of the handbook's {size}-word chunks")
    if built is not None and built.fingerprint == fingerprint:
        return built
    if job.state is JobState.DONE:
        st.warning("The encoding was stopped before every chunk had its vector, so there is nothing to search "
                   "yet.", icon=":material/stop_circle:")
        st.button("Encode the chunks", key="rebuild-chunks", on_click=_ask_rebuild, icon=":material/replay:")
    return None


@st.cache_data(max_entries=256, show_spinner=False)
def query_vector(text: str) -> np.ndarray:
    """MiniLM's unit-length vector for the reader's query, as the chunks were embedded."""
    return np.asarray(embed_sentences(encoder(), [text])[0], dtype=np.float32)
