"""Approximate nearest-neighbour search with faiss: HNSW and IVF indexes, measured against exact search.

An index trades exactness for speed. HNSW (Malkov and Yashunin) links every vector to about M close
neighbours in a graph of several layers and answers a query by walking the graph greedily, keeping a list of
efSearch candidates: a longer list explores more and finds more of the true neighbours, slower. IVF clusters
the vectors around nlist centroids (k-means) and scans only the nprobe clusters whose centroids are closest to
the query: more clusters scanned, more found, slower; nprobe = nlist scans everything.

Quality is recall@k: of the true k nearest (exact search), the share the index returned. Speed is queries per
second, timed one query at a time on one thread, as an online search service answers them. Both are measured
here on real vectors with the query rows taken from the set itself (each query's own row is left out of both
answers). The shared indexes are only ever read: search parameters go with each call (faiss SearchParameters),
never set on the index, so readers with different settings can search one index at once.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np

from engine.runtime.gate import configure_torch, model_work
from engine.retrieval.exact import exact_neighbours_of_rows
from engine.runtime.bounded import BoundedLRU

KINDS = ("hnsw", "ivf")
KIND_NAMES = {"hnsw": "HNSW graph", "ivf": "IVF clusters"}
BUILD_CHOICES = {"hnsw": (8, 16, 32), "ivf": (64, 256, 1024)}
DEFAULT_BUILD = {"hnsw": 16, "ivf": 256}
SEARCH_GRID = {"hnsw": (8, 16, 32, 64, 128, 256, 512), "ivf": (1, 2, 4, 8, 16, 32, 64, 128, 256)}
DEFAULT_SEARCH = {"hnsw": 64}   # IVF: a sixteenth of its clusters (the page picks it from the grid)
EF_CONSTRUCTION = 40           # faiss's default candidate list while building the graph
MIN_POINTS_PER_CENTROID = 39   # faiss's k-means warns below this many training vectors per cluster
MEASURE_QUERIES = 200
EXACT_TIMED_QUERIES = 30            # exact search costs the same for every query: a few give a steady rate
ADD_BATCH = 2048
TIMED_BATCH = 25               # queries timed per pass of the CPU gate, so others get a turn
TIMING_REPEATS = 2             # each batch is timed this often and the fastest run kept

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class IndexSpec:
    kind: str      # "hnsw" or "ivf"
    build: int     # M for HNSW, nlist for IVF

    @property
    def build_name(self) -> str:
        return "M" if self.kind == "hnsw" else "nlist"

    @property
    def search_name(self) -> str:
        return "efSearch" if self.kind == "hnsw" else "nprobe"


def effective_nlist(nlist: int, n: int) -> int:
    """IVF clusters actually used: at most one per 39 vectors, so k-means has enough points to place them."""
    return max(1, min(int(nlist), n // MIN_POINTS_PER_CENTROID))


def search_grid(spec: IndexSpec, n: int) -> tuple[int, ...]:
    """The search settings measured: for IVF, nprobe up to the number of clusters (then it scans them all)."""
    if spec.kind == "hnsw":
        return SEARCH_GRID["hnsw"]
    clusters = effective_nlist(spec.build, n)
    return tuple(v for v in SEARCH_GRID["ivf"] if v < clusters) + (clusters,)


@dataclass(eq=False)
class BuiltIndex:
    spec: IndexSpec
    index: object          # a faiss index; read-only once built
    n: int
    dim: int
    clusters: int          # IVF: the nlist used; HNSW: 0
    seconds: float         # build time
    bytes: int             # serialized size: the vectors plus the graph or the cluster lists


def _threads() -> int:
    import faiss

    threads = configure_torch().threads      # the same thread budget per call as every model pass
    faiss.omp_set_num_threads(threads)
    return threads


class IndexStopped(Exception):
    """The build was stopped before every vector was added."""


def build_index(vectors: np.ndarray, spec: IndexSpec, progress: Progress = lambda f, m: None,
                should_stop: Callable[[], bool] = lambda: False) -> BuiltIndex:
    """Build an inner-product index over unit-length `vectors` (so inner product is cosine), in batches
    that each pass the CPU gate and report progress."""
    import faiss

    _threads()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    started = time.perf_counter()
    clusters = 0
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(spec.build), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
    elif spec.kind == "ivf":
        clusters = effective_nlist(spec.build, n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, clusters, faiss.METRIC_INNER_PRODUCT)
        progress(0.0, f"Clustering {n:,} vectors into {clusters:,} lists (k-means)...")
        with model_work():
            index.train(x)
    else:
        raise ValueError(f"unknown index kind {spec.kind!r}")
    for start in range(0, n, ADD_BATCH):
        if should_stop():
            raise IndexStopped(f"stopped after adding {start:,} of {n:,} vectors")
        with model_work():
            index.add(x[start:start + ADD_BATCH])
        done = min(start + ADD_BATCH, n)
        progress(done / n, f"Building the {spec.kind.upper()} index: {done:,} of {n:,} vectors added")
    seconds = time.perf_counter() - started
    size = int(faiss.serialize_index(index).nbytes)
    return BuiltIndex(spec=spec, index=index, n=n, dim=dim, clusters=clusters, seconds=seconds, bytes=size)


def _params(spec: IndexSpec, value: int):
    import faiss

    if spec.kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=int(value))
    return faiss.SearchParametersIVF(nprobe=int(value))


def ann_search(built: BuiltIndex, queries: np.ndarray, k: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    """The index's answer: ids [nq, k] (-1 where it found fewer) and inner products, best first."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(int(k), built.n))
    scores, ids = built.index.search(q, k, params=_params(built.spec, value))
    return ids, scores


def approximate_neighbours(built: BuiltIndex, query: np.ndarray, k: int, value: int, exclude=()) -> tuple[
        tuple[int, ...], tuple[float, ...]]:
    """The reader's query through the index: k ids and scores, skipping `exclude` as exact search does."""
    excluded = {int(i) for i in exclude}
    q = np.asarray(query, dtype=np.float32)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    ids, scores = ann_search(built, q, k + len(excluded), value)
    kept = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and int(i) not in excluded][:k]
    return tuple(i for i, _ in kept), tuple(s for _, s in kept)


def _without_self(ids: np.ndarray, rows: np.ndarray, k: int) -> list[list[int]]:
    return [[int(i) for i in row if i >= 0 and i != self][:k] for row, self in zip(ids, rows)]


@dataclass(frozen=True)
class Sweep:
    """Recall@k and queries per second at each search setting, with exact search's speed beside them."""
    spec: IndexSpec
    k: int
    n: int
    dim: int
    clusters: int
    queries: int
    values: tuple[int, ...]          # the search settings measured, in order (fewer if stopped early)
    recall: tuple[float, ...]        # mean recall@k over the query rows at each setting
    qps: tuple[float, ...]
    exact_qps: float
    build_seconds: float
    index_bytes: int
    complete: bool

    @property
    def flat_bytes(self) -> int:
        """What the raw vectors take (float32): the floor any index that keeps them exactly must pay."""
        return self.n * self.dim * 4


def query_rows(n: int, count: int = MEASURE_QUERIES, seed: int = 0) -> np.ndarray:
    """A fixed sample of stored rows to use as queries (the same for every index, so they compare)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(count, n), replace=False))


def _time_queries(search_one: Callable[[int], object], count: int, should_stop: Callable[[], bool],
                  repeats: int = TIMING_REPEATS) -> float:
    """Seconds spent answering `count` queries one at a time. Each batch is answered `repeats` times and its
    fastest run kept (as timeit does): a moment when another process held the core does not count."""
    spent = 0.0
    for start in range(0, count, TIMED_BATCH):
        if should_stop():
            break
        with model_work():
            fastest = float("inf")
            for _ in range(repeats):
                began = time.perf_counter()
                for i in range(start, min(start + TIMED_BATCH, count)):
                    search_one(i)
                fastest = min(fastest, time.perf_counter() - began)
        spent += fastest
    return spent


def measure(built: BuiltIndex, unit_vectors: np.ndarray, k: int, progress: Progress = lambda f, m: None,
            should_stop: Callable[[], bool] = lambda: False) -> Sweep:
    """Recall@k against exact search and queries per second, at every search setting of the grid."""
    _threads()
    rows = query_rows(built.n)
    queries = np.ascontiguousarray(unit_vectors[rows], dtype=np.float32)
    k = max(1, min(int(k), built.n - 1))
    progress(0.0, "Exact search for the test queries (the ground truth)...")
    with model_work():
        truth = exact_neighbours_of_rows(unit_vectors, rows, k)
    timed = min(EXACT_TIMED_QUERIES, len(rows))

    def exact_one(i: int):
        scores = unit_vectors @ queries[i]
        return np.argpartition(-scores, k)[:k + 1]

    exact_seconds = _time_queries(exact_one, timed, should_stop)
    grid = search_grid(built.spec, built.n)
    values, recalls, speeds = [], [], []
    for step, value in enumerate(grid):
        if should_stop():
            break
        progress(step / len(grid), f"Measuring {built.spec.search_name} = {value}: {len(rows)} queries, one at a time")
        found: list = [None] * len(rows)

        def approx_one(i: int, value=value):
            found[i] = ann_search(built, queries[i], k + 1, value)[0][0]

        seconds = _time_queries(approx_one, len(rows), should_stop)
        if any(f is None for f in found):
            break
        answers = _without_self(np.stack(found), rows, k)
        recalls.append(float(np.mean([len(set(a) & set(t.tolist())) / k for a, t in zip(answers, truth)])))
        speeds.append(len(rows) / max(seconds, 1e-9))
        values.append(int(value))
    progress(1.0, "Measured")
    return Sweep(spec=built.spec, k=k, n=built.n, dim=built.dim, clusters=built.clusters, queries=len(rows),
                 values=tuple(values), recall=tuple(recalls), qps=tuple(speeds),
                 exact_qps=timed / max(exact_seconds, 1e-9) if exact_seconds else float("nan"),
                 build_seconds=built.seconds, index_bytes=built.bytes, complete=len(values) == len(grid))


class IndexStore(BoundedLRU):
    """Built indexes by key, least recently used out first. An index over the token embeddings holds a copy
    of the 49,152 x 576 vectors (113 MB), so only a few are kept."""

    def __init__(self, max_entries: int = 3):
        super().__init__(max_entries)


_store: IndexStore | None = None
_store_lock = threading.Lock()


def index_store() -> IndexStore:
    """The process's one store of built indexes, shared by every reader."""
    global _store
    with _store_lock:
        if _store is None:
            _store = IndexStore()
        return _store
