"""Exact nearest-neighbour search, the ground truth every approximate index is measured against.

Exact search is one matrix-vector product and a partial sort: score every stored vector, keep the best k. Its
cost grows with the number of vectors times their width, which is what approximate indexes avoid.

Three ways to score closeness: cosine (the angle only), dot product (angle and both lengths) and Euclidean
distance (smaller is closer). On unit-length vectors they agree: |a - b|^2 = 2 - 2 a.b, so ranking by distance
is ranking by dot product is ranking by cosine. On vectors of different lengths (SmolLM2's token embedding rows
run from under 2 to over 7) they disagree, and `compare_metrics` shows how.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.inside.embeddings import cosine_scores, normalize_rows, top_k

METRICS = ("cosine", "dot", "euclidean")
METRIC_NAMES = {"cosine": "Cosine similarity", "dot": "Dot product", "euclidean": "Euclidean distance"}


@dataclass(frozen=True)
class Hits:
    """The k nearest stored vectors, closest first: their row ids and scores."""
    ids: tuple[int, ...]
    scores: tuple[float, ...]


def exact_search(unit_vectors: np.ndarray, query: np.ndarray, k: int, exclude=()) -> Hits:
    """The k rows with the highest cosine to `query` (rows already unit length), skipping `exclude`."""
    pairs = top_k(cosine_scores(unit_vectors, query), k, exclude)
    return Hits(ids=tuple(i for i, _ in pairs), scores=tuple(s for _, s in pairs))


def exact_neighbours_of_rows(unit_vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """For stored rows used as queries: each one's k nearest other rows by cosine, [len(rows), k] ids.

    The row itself is left out (its cosine with itself is 1): a query is never its own answer.
    """
    scores = unit_vectors[rows] @ unit_vectors.T
    scores[np.arange(len(rows)), rows] = -np.inf
    k = min(k, unit_vectors.shape[0] - 1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


@dataclass(frozen=True)
class MetricRanking:
    metric: str
    ids: tuple[int, ...]
    values: tuple[float, ...]      # the metric's own value: cosine, dot product, or distance
    mean_length: float             # mean vector length of the rows it picked


def compare_metrics(matrix: np.ndarray, query: np.ndarray, k: int, exclude=(),
                    lengths: np.ndarray | None = None) -> dict[str, MetricRanking]:
    """The top k rows of the raw (not normalised) `matrix` under each metric, with the lengths they favour."""
    q = np.asarray(query, dtype=np.float32)
    lengths = np.linalg.norm(matrix, axis=1) if lengths is None else lengths
    dot = matrix @ q
    cosine = dot / np.maximum(lengths * np.linalg.norm(q), 1e-12)
    distance = np.sqrt(np.maximum(lengths.astype(np.float64) ** 2 - 2 * dot + float(q @ q), 0.0))
    rankings = {}
    for metric, score in (("cosine", cosine), ("dot", dot), ("euclidean", -distance)):
        pairs = top_k(score, k, exclude)
        ids = tuple(i for i, _ in pairs)
        values = tuple(float(distance[i]) if metric == "euclidean" else float(score[i]) for i in ids)
        rankings[metric] = MetricRanking(metric, ids, values, float(np.mean(lengths[list(ids)])) if ids else 0.0)
    return rankings


def overlap(a, b) -> int:
    """How many ids two result lists share."""
    return len(set(a) & set(b))


def recall_at_k(approximate, exact, k: int) -> float:
    """The share of the true k nearest that the approximate search returned: |A ∩ E| / k."""
    return overlap(list(approximate)[:k], list(exact)[:k]) / k if k else 0.0


__all__ = ["Hits", "METRICS", "METRIC_NAMES", "MetricRanking", "compare_metrics", "exact_neighbours_of_rows",
           "exact_search", "normalize_rows", "overlap", "recall_at_k"]
