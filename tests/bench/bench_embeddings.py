"""Token-embedding figures: projecting 200 tokens (PCA, t-SNE, UMAP first call and warm), neighbour queries,
vector arithmetic, and the page's server-side rerun time. Targets: 200 tokens under 3 s, PCA under 300 ms."""
from __future__ import annotations

import time

import numpy as np

from tests.bench.timing import p50_p95_ms, timed

GROUPS = ("animals: cat, dog, horse, cow, sheep, lion, tiger, elephant, giraffe, rabbit\n"
          "countries: France, Germany, Italy, Spain, Japan, China, Brazil, Canada, Egypt, India\n"
          "colours: red, green, blue, yellow, purple, orange, pink, brown, grey, turquoise\n"
          "numbers: one, two, three, four, five, six, seven, eight, nine, ten")


def _once(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _points_200(lm) -> np.ndarray:
    """The page's default 40 words plus grey context tokens: 200 vectors, as the page builds them."""
    from engine.inside.embeddings import embedding_matrix, map_words, word_vector

    view = map_words(lm, GROUPS, method="pca", background=170)
    matrix = embedding_matrix(lm)
    vectors = np.array([word_vector(matrix, tuple(int(i) for i in ids.split())) for ids in view.points["ids"]])
    return vectors[:200]


def run(lm) -> list[tuple[str, str]]:
    from engine.inside.embeddings import (embedding_matrix, map_words, neighbours, normalize_rows, project,
                                   solve_analogy)

    rows: list[tuple[str, str]] = []
    umap_first = _once(lambda: project(np.random.default_rng(0).normal(size=(40, 16)), "umap", 2))
    rows.append(("UMAP first call in a process (import + numba compile)", f"{umap_first:.2f} s"))

    vectors = _points_200(lm)
    n = len(vectors)
    rows.append((f"PCA, {n} tokens, 2-D (target < 300 ms)", p50_p95_ms(timed(lambda: project(vectors, "pca", 2)))))
    rows.append((f"PCA, {n} tokens, 3-D", p50_p95_ms(timed(lambda: project(vectors, "pca", 3)))))
    for dims in (2, 3):
        rows.append((f"t-SNE, {n} tokens, {dims}-D (target < 3 s)",
                     p50_p95_ms(timed(lambda: project(vectors, "tsne", dims), repeat=3, warmup=0))))
    for dims in (2, 3):
        rows.append((f"UMAP warm, {n} tokens, {dims}-D (target < 3 s)",
                     p50_p95_ms(timed(lambda: project(vectors, "umap", dims), repeat=3, warmup=1))))
    rows.append(("map_words: 40 words + 160 context, PCA, end to end",
                 p50_p95_ms(timed(lambda: map_words(lm, GROUPS, method="pca", background=160), repeat=10))))
    rows.append(("map_words: 40 words + 160 context, t-SNE 2-D, end to end",
                 p50_p95_ms(timed(lambda: map_words(lm, GROUPS, method="tsne", background=160), repeat=3))))

    started = time.perf_counter()
    unit = normalize_rows(embedding_matrix(lm))
    rows.append(("normalise 49,152 x 576 rows (once per server)",
                 f"{1000 * (time.perf_counter() - started):.0f} ms, {unit.nbytes / 1e6:.0f} MB"))
    words = iter(["king", "Paris", "cat", "Monday", "happy", "python", "blue", "river", "music", "hippo"] * 3)
    rows.append(("nearest neighbours of one word over all 49,152 rows, k=15",
                 p50_p95_ms(timed(lambda: neighbours(lm, unit, next(words), k=15), repeat=20))))
    rows.append(("vector arithmetic a - b + c, top-10 both ways + ranks",
                 p50_p95_ms(timed(lambda: solve_analogy(lm, unit, "king", "man", "woman", "queen"), repeat=10))))
    rows.append(("page rerun, warm caches (AppTest, server side)", _page_rerun()))
    return rows


def _page_rerun() -> str:
    from tests.pages import open_page

    at = open_page("token-embeddings")
    times = []
    for _ in range(5):
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
    return p50_p95_ms(times)
