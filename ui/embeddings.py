"""Embedding computations cached by their inputs (strings, numbers and flags), shared by every session, and the
token-embeddings page's larger displays (the matrix facts, the analogy's ranks and its description)."""
from __future__ import annotations

import logging
import threading

import numpy as np
import pandas as pd
import streamlit as st

from engine.inside.embeddings import (METHOD_NAMES, AnalogyResult, Neighbour, Neighbours, Projection, WordMap,
                               embedding_matrix, map_words, neighbours, normalize_rows, solve_analogy, warm_umap)
from engine.runtime.gate import lowest_priority_for_this_thread
from engine.model.live_model import LiveModel
from engine.tokens.offsets import visible
from ui.models import lm
from ui.text import escape_markdown, ordinal, token_markdown as tok

log = logging.getLogger("llm_handbook")


@st.cache_resource(max_entries=1, show_spinner=False)
def normalized_embeddings() -> np.ndarray:
    """Every row of the embedding matrix scaled to length 1 (a float32 copy, ~113 MB), computed once, read-only."""
    unit = normalize_rows(embedding_matrix(lm()))
    unit.flags.writeable = False
    return unit


@st.cache_data(max_entries=1, show_spinner=False)
def mean_row_length() -> float:
    return float(np.linalg.norm(embedding_matrix(lm()), axis=1).mean())


@st.cache_data(max_entries=64, show_spinner=False)
def word_map(groups_text: str, leading_space: bool, method: str, dims: int, background: int,
             seed: int = 0) -> WordMap:
    return map_words(lm(), groups_text, leading_space, method, dims, background, seed)


@st.cache_data(max_entries=256, show_spinner=False)
def nearest(word: str, leading_space: bool, k: int, exclude_query: bool, hide_variants: bool) -> Neighbours:
    return neighbours(lm(), normalized_embeddings(), word, leading_space, k, exclude_query, hide_variants)


@st.cache_data(max_entries=128, show_spinner=False)
def arithmetic(a: str, b: str, c: str, expected: str, leading_space: bool, k: int = 10) -> AnalogyResult | None:
    return solve_analogy(lm(), normalized_embeddings(), a, b, c, expected, leading_space, k)


def _warm() -> None:
    lowest_priority_for_this_thread()   # nine seconds of compiling must not slow the readers down
    # The page run that starts this thread may be importing torch right now. UMAP's imports (scipy) look
    # torch up half-initialised and fail; importing it here waits until that import has finished.
    import torch  # noqa: F401
    try:
        log.info("UMAP warmed up (numba compiled) in %.1f s", warm_umap())
    except Exception:  # a failed warm-up only means the first UMAP view is slower
        log.exception("UMAP warm-up failed")


@st.cache_resource(show_spinner=False)
def umap_warmup() -> threading.Thread:
    """Compile UMAP's numba code once per server, in the background (about 9 s of one core).

    Not a daemon thread: a process that ends while numba is compiling in a daemon thread can abort in LLVM
    at interpreter exit (seen in short test runs, exit codes 134 and 139). Python waits for a non-daemon thread
    before it shuts down, so the compile finishes first: a few seconds' delay, and only near a server's start."""
    thread = threading.Thread(target=_warm, name="umap-warmup", daemon=False)
    thread.start()
    return thread


def ranked_table(rows: list[Neighbour]) -> pd.DataFrame:
    """The numbers behind a ranked cosine chart, for its CSV."""
    return pd.DataFrame({"rank": range(1, len(rows) + 1), "token": [r.text for r in rows],
                         "token_id": [r.id for r in rows], "cosine": [r.cosine for r in rows]})


def describe_analogy(solved: AnalogyResult, equation: str, vocab: int) -> str:
    """What the two rankings of a - b + c say, in Markdown (equation already escaped)."""
    top_all, top_excl = solved.including[0], solved.excluding[0]
    sentences = []
    if top_all.is_query:
        sentences.append(f"Over the whole vocabulary the closest row to {equation} is {tok(top_all.text)}, one of the "
                         "inputs: the offset b → c is small next to the vector of a. Leaving the inputs out (right) "
                         f"promotes {tok(top_excl.text)}"
                         + (", itself only another spelling of an input" if solved.is_input_variant(top_excl.text)
                            else "")
                         + "; that convention makes analogies look better than the raw geometry is.")
    else:
        sentence = (f"The closest row of all to {equation} is {tok(top_all.text)}, not one of the inputs, so "
                    "leaving the inputs out does not change the winner")
        runner_up = next(((n, r) for n, r in enumerate(solved.including, 1) if r.is_query), None)
        if runner_up:
            sentence += (f"; but the input {tok(runner_up[1].text)} still comes {ordinal(runner_up[0])} "
                         f"(cosine {runner_up[1].cosine:.3f})")
        sentences.append(sentence + ".")
    if solved.expected_id is not None:
        rank = solved.expected_rank_all
        sentences.append(f"The expected {tok(solved.expected.form)} ranks {ordinal(rank)} of {vocab:,} "
                         f"(cosine {solved.expected_cosine:.3f})" +
                         (": the arithmetic works here." if rank == 1 else
                          "." if rank <= 10 else ": the arithmetic misses it on this model."))
        if solved.baseline_a and solved.expected_rank_excluding:
            ra, rc = solved.baseline_a[0], solved.baseline_c[0]
            sentences.append(f"Without arithmetic it ranks {ordinal(ra)} among the neighbours of "
                             f"{tok(solved.a.form)} alone and {ordinal(rc)} among those of {tok(solved.c.form)} "
                             f"alone (inputs excluded in both), against {ordinal(solved.expected_rank_excluding)} "
                             "with it.")
    return " ".join(sentences)


def show_matrix_facts(model: LiveModel, matrix: np.ndarray) -> None:
    """The embedding matrix in five numbers, the tie to the output layer checked on the live weights."""
    rows, width = matrix.shape
    tied = model.model.lm_head.weight.data_ptr() == model.model.model.embed_tokens.weight.data_ptr()
    with st.container(horizontal=True, gap="large"):   # wraps on a narrow window instead of cutting the numbers
        st.metric("Rows (tokens)", f"{rows:,}", width="content")
        st.metric("Columns (d_model)", f"{width}", width="content")
        st.metric("Numbers in the matrix", f"{matrix.size / 1e6:.1f} M", width="content",
                  help=f"{rows:,} x {width} = {matrix.size:,}; {100 * matrix.size / model.card.parameters:.1f}% "
                       f"of the model's {model.card.parameters / 1e6:.1f} M parameters.")
        st.metric("Mean row length", f"{mean_row_length():.2f}", width="content",
                  help="Euclidean norm of a row, averaged over the vocabulary. Cosine similarity ignores it.")
        st.metric("Tied to the output layer", "yes" if tied else "no", width="content",
                  help="Checked live: the output layer's weight is the very same memory as the embedding matrix.")


def show_analogy_metrics(solved: AnalogyResult, equation: str, vocab: int) -> None:
    """Where the expected answer ranks with and without the inputs, and without any arithmetic."""
    metrics = st.columns(4)
    if solved.expected_id is not None:
        name = escape_markdown(visible(solved.expected.form))
        metrics[0].metric(f"Rank of {name}, all tokens", ordinal(solved.expected_rank_all),
                          help=f"Out of {vocab:,}, by cosine with {equation}.")
        metrics[1].metric("Rank with the inputs excluded",
                          ordinal(solved.expected_rank_excluding) if solved.expected_rank_excluding else "n/a",
                          help="The inputs' own tokens are left out of the ranking, as word2vec's demo did.")
        metrics[2].metric(f"Cosine of {name}", f"{solved.expected_cosine:.3f}")
        if solved.baseline_a:
            best = min((solved.baseline_a, visible(solved.a.form)), (solved.baseline_c, visible(solved.c.form)))
            metrics[3].metric("Without arithmetic", ordinal(best[0][0]),
                              help=f"Rank of {name} among the neighbours of {best[1]} alone (inputs "
                                   f"excluded), cosine {best[0][1]:.3f}. If arithmetic helps, the rank "
                                   "above is better than this.")
    elif solved.expected is not None and solved.expected.ids:
        metrics[0].metric(f"Cosine of {escape_markdown(visible(solved.expected.form))}",
                          f"{solved.expected_cosine:.3f}",
                          help="This word is several tokens, so it is not one row of the vocabulary and has "
                               "no rank; its cosine is with the mean of its tokens' rows.")


def projection_caption(proj: Projection, dims: int, several_tokens: bool) -> str:
    """What a reader may and may not read into the projected map (plain text)."""
    notes = [proj.note] if proj.note else []
    if several_tokens:
        notes.append("◆ and * mark words made of several tokens, drawn at the mean of their pieces' rows "
                     "(hover lists the pieces).")
    if proj.method == "pca":
        shown = float(proj.explained[:dims].sum())
        notes.append(f"PCA is linear: positions along the axes are real, but the {dims} axes keep only "
                     f"{100 * shown:.1f}% of these points' variance; the rest of the 576 dimensions is "
                     "flattened away.")
    else:
        notes.append(f"{METHOD_NAMES[proj.method]} keeps who is near whom; the distances between clusters and "
                     "their sizes carry little meaning, and another seed would arrange them differently.")
    return " ".join(notes)
