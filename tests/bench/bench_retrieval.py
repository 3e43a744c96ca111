"""Retrieval: the handbook's chunk index built from nothing and loaded from disk, and approximate-nearest-
neighbour indexes built over SmolLM2's 49,152 token embeddings.

Targets (issue 10): the handbook index builds in < 30 s once and loads in < 1 s after; an ANN index over
49,152 vectors builds in < 10 s. A RAG answer (< 5 s) is timed as the rag page's job in bench_jobs.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from engine.inside.embeddings import embedding_matrix
from engine.model.encoder import embed_sentences, load_encoder
from engine.retrieval.ann import IndexSpec, build_index
from engine.retrieval.chunks import DEFAULT_CHUNK_SIZE, build_chunk_index, load_chunk_index, read_concept_files

ANN_SPECS = (IndexSpec("hnsw", 16), IndexSpec("hnsw", 32), IndexSpec("ivf", 256))


def run(lm) -> list[tuple[str, str]]:
    rows = []
    files = read_concept_files()
    encoder = load_encoder()
    with tempfile.TemporaryDirectory() as folder:   # a cache of its own: every chunk is encoded now
        root = Path(folder)
        started = time.perf_counter()
        built = build_chunk_index(lambda texts: embed_sentences(encoder, texts), DEFAULT_CHUNK_SIZE, files, root)
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        loaded = load_chunk_index(DEFAULT_CHUNK_SIZE, files, root)
        load_s = time.perf_counter() - started
    rows.append((f"handbook index, {len(built.chunks):,} chunks of <= {DEFAULT_CHUNK_SIZE} words: built from nothing",
                 f"{build_s:.1f} s ({len(files)} concept files)"))
    rows.append(("handbook index: loaded from disk", f"{1000 * load_s:.0f} ms"
                 + ("" if loaded is not None and np.array_equal(loaded.vectors, built.vectors) else " (MISMATCH)")))
    matrix = embedding_matrix(lm).astype(np.float32)
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    for spec in ANN_SPECS:
        started = time.perf_counter()
        build_index(unit, spec)
        rows.append((f"ANN index over {len(unit):,} token vectors: {spec.kind} {spec.build_name}={spec.build}",
                     f"{time.perf_counter() - started:.1f} s to build"))
    return rows
