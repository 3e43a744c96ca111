"""SmolLM2's token embedding matrix: words to rows, projections to 2-D/3-D, cosine neighbours, analogies.

The matrix is the model's own `embed_tokens.weight` (49,152 x 576, tied to the output layer). It is
only ever read: `embedding_matrix` hands out a read-only view, and every computation that needs a
changed copy (normalising, centring) makes one.
"""
from __future__ import annotations

import re
from contextlib import nullcontext
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.runtime.gate import cpu_gate
from engine.model.live_model import LiveModel

METHODS = ("pca", "tsne", "umap")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
MAX_GROUPS = 7            # one Okabe-Ito colour each (its black is kept off the scatter)
MAX_WORDS_PER_GROUP = 30
MAX_WORDS = 150
MAX_WORD_CHARS = 40
MAX_WORD_TOKENS = 8
MIN_POINTS_NONLINEAR = 5  # below this t-SNE and UMAP have no neighbourhoods to keep; PCA is used instead
FEW_POINTS = 15           # below this they run, with a warning that the layout is fragile
_SPLIT = re.compile(r"[,\n;]")
_WHOLE_WORD_PIECE = re.compile(r"Ġ[A-Za-z]{2,}")  # byte-level BPE: 'Ġ' is the leading space
_umap_warm = False   # set once UMAP has run in this process


# ---------------------------------------------------------------- the matrix

def embedding_matrix(lm: LiveModel) -> np.ndarray:
    """The model's embedding rows as a read-only float32 view (no copy; writing to it raises)."""
    view = lm.model.model.embed_tokens.weight.detach().numpy().view()
    view.flags.writeable = False
    return view


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """A new float32 array with every row scaled to length 1, so a dot product is a cosine."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    out = matrix / np.maximum(norms, 1e-12)
    return out.astype(np.float32, copy=False)


# ---------------------------------------------------------------- words to tokens

@dataclass(frozen=True)
class WordTokens:
    """A word as the model sees it: the exact string looked up and the token(s) it becomes."""
    word: str                 # as the user typed it (trimmed)
    form: str                 # the string tokenized, e.g. " king"
    ids: tuple[int, ...]
    pieces: tuple[str, ...]   # each token decoded on its own

    @property
    def multi(self) -> bool:
        return len(self.ids) > 1


def lookup_word(lm: LiveModel, word: str, leading_space: bool = True) -> WordTokens:
    """Tokenize `word` as it appears inside running text (" word") or at the very start ("word").

    A long word is cut to MAX_WORD_TOKENS tokens. An empty word has no tokens.
    """
    word = (word or "").strip()[:MAX_WORD_CHARS]
    form = f" {word}" if leading_space and word else word
    if not form:
        return WordTokens(word, form, (), ())
    with lm.tokenizing() as tok:
        ids = tok(form, add_special_tokens=False)["input_ids"][:MAX_WORD_TOKENS]
        pieces = tuple(tok.decode([i]) for i in ids)
    return WordTokens(word, form, tuple(int(i) for i in ids), pieces)


def word_vector(matrix: np.ndarray, ids: tuple[int, ...] | list[int]) -> np.ndarray:
    """A word's vector: its token's row, or the mean of its tokens' rows when it splits into several."""
    if not ids:
        raise ValueError("a word needs at least one token")
    return matrix[list(ids)].astype(np.float64).mean(axis=0)


def token_texts(lm: LiveModel, ids) -> list[str]:
    with lm.tokenizing() as tok:
        return [tok.decode([int(i)]) for i in ids]


def background_ids(lm: LiveModel, n: int) -> list[int]:
    """The `n` lowest-id tokens that are a space followed by letters.

    BPE numbers its merges in the order it learned them, so low ids are frequent words and word starts
    (' the', ' of', ' con'...): a fair sample of the everyday vocabulary around the chosen words.
    """
    if n <= 0:
        return []
    with lm.tokenizing() as tok:
        pieces = tok.convert_ids_to_tokens(list(range(min(lm.card.vocab_size, 20_000))))
    return [i for i, p in enumerate(pieces) if _WHOLE_WORD_PIECE.fullmatch(p)][:n]


# ---------------------------------------------------------------- word groups

@dataclass(frozen=True)
class WordGroup:
    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class ParsedGroups:
    groups: tuple[WordGroup, ...]
    notes: tuple[str, ...] = ()

    @property
    def word_count(self) -> int:
        return sum(len(g.words) for g in self.groups)


def parse_groups(text: str) -> ParsedGroups:
    """Read one group per line, `name: word, word, ...` (the name is optional).

    Duplicates are dropped (a word stays in the first group that names it); group, word and length
    limits are enforced with a note for each cut, so any text yields a usable, bounded result.
    """
    notes: list[str] = []
    groups: list[WordGroup] = []
    seen: set[str] = set()
    dropped_groups = dropped_words = duplicates = 0
    total = 0
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        name, sep, rest = line.partition(":")
        if not sep:
            name, rest = "", line
        if not any(w.strip() for w in _SPLIT.split(rest)):
            continue
        if len(groups) >= MAX_GROUPS:
            dropped_groups += 1
            continue
        words: list[str] = []
        for raw in _SPLIT.split(rest):
            word = " ".join(raw.split())[:MAX_WORD_CHARS]
            if not word:
                continue
            if word in seen:
                duplicates += 1
                continue
            if len(words) >= MAX_WORDS_PER_GROUP or total >= MAX_WORDS:
                dropped_words += 1
                continue
            seen.add(word)
            words.append(word)
            total += 1
        if not words:
            continue
        name = " ".join(name.split())[:30] or f"group {len(groups) + 1}"
        groups.append(WordGroup(name, tuple(words)))
    if dropped_groups:
        notes.append(f"Only the first {MAX_GROUPS} groups are shown ({dropped_groups} more ignored).")
    if dropped_words:
        notes.append(f"Kept at most {MAX_WORDS_PER_GROUP} words per group and {MAX_WORDS} in all "
                     f"({dropped_words} ignored).")
    if duplicates:
        notes.append(f"{duplicates} repeated word(s) kept once, in the first group that lists them.")
    return ParsedGroups(tuple(groups), tuple(notes))


# ---------------------------------------------------------------- projections

@dataclass(frozen=True)
class Projection:
    coords: np.ndarray            # [n, dims]
    method: str                   # the method actually used ("pca" when a small n forced a fallback)
    dims: int
    explained: np.ndarray         # PCA: share of the points' variance per component (all components)
    note: str = ""


def pca(vectors: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA by SVD of the centred points: (coordinates [n, dims], explained-variance ratio per component).

    Each component's sign is fixed so its largest loading is positive, which makes the picture
    reproducible. With fewer points than `dims` + 1, the missing components are zero.
    """
    x = np.asarray(vectors, dtype=np.float64)
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1.0
    vt = vt * signs[:, None]
    k = min(dims, vt.shape[0])
    coords = np.zeros((x.shape[0], dims))
    coords[:, :k] = centred @ vt[:k].T
    variance = s ** 2
    total = variance.sum()
    explained = variance / total if total > 0 else np.zeros_like(variance)
    return coords, explained


def tsne_perplexity(n: int) -> float:
    """sklearn's default 30, lowered for few points: it must stay below n (here at most (n - 1) / 3)."""
    return float(min(30.0, max(1.0, (n - 1) / 3)))


def tsne_steps(n: int) -> int:
    """Few points converge slowly, 3-D ones especially (measured: more steps clearly steadies small maps)."""
    return 3000 if n <= 150 else 1000


def umap_neighbors(n: int) -> int:
    return int(min(15, max(2, n - 1)))


def project(vectors: np.ndarray, method: str = "pca", dims: int = 2, seed: int = 0, gated: bool = True) -> Projection:
    """Project points to `dims` (2 or 3) dimensions by PCA, t-SNE or UMAP (cosine metric, fixed seed).

    `gated`: pass the CPU gate like a model pass. Only the background warm-up, which runs at the lowest CPU
    priority on otherwise idle cores, goes around it.
    """
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    dims = 3 if dims == 3 else 2
    method = method if method in METHODS else "pca"
    coords, explained = pca(x, dims) if n else (np.zeros((0, dims)), np.zeros(0))
    if method == "pca" or n == 0:
        return Projection(coords, "pca", dims, explained)
    if n < MIN_POINTS_NONLINEAR:
        return Projection(coords, "pca", dims, explained,
                          note=f"{METHOD_NAMES[method]} needs at least {MIN_POINTS_NONLINEAR} points to "
                               f"have neighbourhoods to keep; showing PCA for these {n}.")
    with cpu_gate().slot() if gated else nullcontext(), warnings.catch_warnings():   # CPU work like a model pass
        warnings.simplefilter("ignore")   # umap warns that a seed disables its parallelism: intended
        if method == "tsne":
            from sklearn.manifold import TSNE
            from threadpoolctl import threadpool_limits
            perplexity = tsne_perplexity(n)
            steps = tsne_steps(n)
            # One OpenMP thread: on a busy 2-core server, sklearn's Barnes-Hut threads spin-wait for each
            # other and a 40-point map measured 0.03 s alone but up to 50 s under load. (Per calling thread.)
            with threadpool_limits(limits=1, user_api="openmp"):
                fitted = TSNE(n_components=dims, perplexity=perplexity, metric="cosine", init="pca",
                              max_iter=steps, random_state=seed).fit_transform(x.astype(np.float32))
            note = f"t-SNE, cosine distance, perplexity {perplexity:.3g}, {steps:,} steps, seed {seed}."
        else:
            import umap
            k = umap_neighbors(n)
            fitted = umap.UMAP(n_components=dims, n_neighbors=k, metric="cosine", init="pca",
                               random_state=seed, n_jobs=1).fit_transform(x.astype(np.float32))
            note = f"UMAP, cosine distance, {k} neighbours, seed {seed}."
    if method == "umap":
        global _umap_warm
        _umap_warm = True
    if n < FEW_POINTS:
        note += (f" With only {n} points there is little neighbourhood structure to keep, so the layout is "
                 "fragile; PCA is more faithful here.")
    return Projection(np.asarray(fitted, dtype=np.float64), method, dims, explained, note)


def group_cohesion(vectors: np.ndarray, groups: list[str]) -> list[tuple[str, int, float, float]]:
    """Per group, in the full 576 dimensions: (group, size, mean cosine within it, mean cosine to the rest).

    Projections distort; these numbers do not. A group whose words are closer to each other than to
    the other groups is a real cluster of the embedding space.
    """
    unit = normalize_rows(np.asarray(vectors, dtype=np.float64))
    sims = unit @ unit.T
    labels = np.asarray(groups)
    rows = []
    for name in dict.fromkeys(groups):
        inside = labels == name
        m = int(inside.sum())
        within = sims[np.ix_(inside, inside)]
        within_mean = float((within.sum() - np.trace(within)) / (m * (m - 1))) if m > 1 else float("nan")
        outside = ~inside
        between = float(sims[np.ix_(inside, outside)].mean()) if outside.any() else float("nan")
        rows.append((name, m, within_mean, between))
    return rows


# ---------------------------------------------------------------- cosine neighbours and arithmetic

def cosine_scores(normalized: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """Cosine of `vector` with every row of the (row-normalised) matrix: [vocab] float32."""
    v = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(v)
    if norm == 0:
        return np.zeros(normalized.shape[0], dtype=np.float32)
    return normalized @ (v / norm).astype(np.float32)


def top_k(scores: np.ndarray, k: int, exclude=()) -> list[tuple[int, float]]:
    """The `k` highest scores as (token id, score), best first, skipping the ids in `exclude`."""
    k = max(1, min(int(k), scores.size))
    excluded = {int(i) for i in exclude}
    take = min(scores.size, k + len(excluded))
    candidates = np.argpartition(-scores, take - 1)[:take]
    ordered = candidates[np.argsort(-scores[candidates], kind="stable")]
    return [(int(i), float(scores[i])) for i in ordered if int(i) not in excluded][:k]


def rank_of(scores: np.ndarray, token_id: int, exclude=()) -> int:
    """1-based rank of `token_id` among all tokens by score (ids in `exclude` do not count)."""
    target = scores[token_id]
    better = scores > target
    for i in exclude:
        if int(i) != token_id:
            better[int(i)] = False
    return int(better.sum()) + 1


@dataclass(frozen=True)
class Analogy:
    """a - b + c, scored against the whole vocabulary by cosine."""
    vector: np.ndarray                       # the result vector a - b + c (576,)
    scores: np.ndarray                       # cosine with every token row (49,152,)
    input_ids: tuple[int, ...]               # every token of the three input words
    including: list[tuple[int, float]]       # top-k over all tokens
    excluding: list[tuple[int, float]]       # top-k with the input tokens left out


def analogy(matrix: np.ndarray, normalized: np.ndarray, a: tuple[int, ...], b: tuple[int, ...],
            c: tuple[int, ...], k: int = 10) -> Analogy:
    vector = word_vector(matrix, a) - word_vector(matrix, b) + word_vector(matrix, c)
    scores = cosine_scores(normalized, vector)
    inputs = tuple(dict.fromkeys((*a, *b, *c)))
    return Analogy(vector, scores, inputs, top_k(scores, k), top_k(scores, k, exclude=inputs))


def same_word(text: str, word: str) -> bool:
    """True when a token is the word itself up to capitalisation and spacing (' King' for 'king')."""
    return text.strip().casefold() == word.strip().casefold() and bool(word.strip())


# ---------------------------------------------------------------- what the page shows

@dataclass(frozen=True)
class WordMap:
    """Chosen words (and optional grey context tokens) placed in 2-D or 3-D."""
    points: pd.DataFrame          # one row per point: kind, group, word, form, ids, pieces, multi, x, y[, z]
    projection: Projection
    cohesion: list[tuple[str, int, float, float]]
    notes: tuple[str, ...]


def map_words(lm: LiveModel, groups_text: str, leading_space: bool = True, method: str = "pca", dims: int = 2,
              background: int = 0, seed: int = 0) -> WordMap:
    parsed = parse_groups(groups_text)
    matrix = embedding_matrix(lm)
    rows, vectors = [], []
    seen_forms: dict[tuple[int, ...], str] = {}
    same_tokens = []
    for group in parsed.groups:
        for word in group.words:
            wt = lookup_word(lm, word, leading_space)
            if not wt.ids:
                continue
            if wt.ids in seen_forms:   # e.g. "Cat" and "cat " can be the same token: one point each
                same_tokens.append(f"{word!r} = {seen_forms[wt.ids]!r}")
                continue
            seen_forms[wt.ids] = word
            rows.append(dict(kind="word", group=group.name, word=word, form=wt.form,
                             ids=" ".join(map(str, wt.ids)), pieces=" + ".join(repr(p) for p in wt.pieces),
                             multi=wt.multi))
            vectors.append(word_vector(matrix, wt.ids))
    cohesion = group_cohesion(np.array(vectors), [r["group"] for r in rows]) if len(rows) > 1 else []
    taken = {ids for ids in seen_forms}
    context = [i for i in background_ids(lm, background) if (i,) not in taken]
    for i, text in zip(context, token_texts(lm, context)):
        rows.append(dict(kind="context", group="context", word=text, form=text, ids=str(i), pieces=repr(text),
                         multi=False))
        vectors.append(matrix[i].astype(np.float64))
    projection = project(np.array(vectors) if vectors else np.zeros((0, matrix.shape[1])), method, dims, seed)
    points = pd.DataFrame(rows, columns=["kind", "group", "word", "form", "ids", "pieces", "multi"])
    for axis, name in enumerate("xyz"[:projection.dims]):
        points[name] = projection.coords[:, axis] if len(points) else []
    notes = list(parsed.notes)
    if same_tokens:
        notes.append("Same token(s), shown once: " + "; ".join(same_tokens[:5]) + ".")
    return WordMap(points, projection, cohesion, tuple(notes))


@dataclass(frozen=True)
class Neighbour:
    id: int
    text: str
    cosine: float
    is_query: bool        # one of the query's own tokens
    variant: bool         # the same word up to capitalisation and spacing


@dataclass(frozen=True)
class Neighbours:
    query: WordTokens
    rows: list[Neighbour]
    hidden_variants: int = 0


def neighbours(lm: LiveModel, normalized: np.ndarray, word: str, leading_space: bool = True, k: int = 15,
               exclude_query: bool = False, hide_variants: bool = False) -> Neighbours:
    """The k tokens, among all 49,152, whose rows point most nearly the same way as the word's vector."""
    query = lookup_word(lm, word, leading_space)
    if not query.ids:
        return Neighbours(query, [])
    scores = cosine_scores(normalized, word_vector(embedding_matrix(lm), query.ids))
    exclude = query.ids if exclude_query else ()
    pool = top_k(scores, k + (60 if hide_variants else 0), exclude=exclude)
    texts = token_texts(lm, [i for i, _ in pool])
    rows, hidden = [], 0
    for (i, cos), text in zip(pool, texts):
        variant = same_word(text, query.word)
        if hide_variants and variant and i not in query.ids:
            hidden += 1
            continue
        rows.append(Neighbour(i, text, cos, i in query.ids, variant))
    return Neighbours(query, rows[:k], hidden)


@dataclass(frozen=True)
class AnalogyResult:
    a: WordTokens
    b: WordTokens
    c: WordTokens
    expected: WordTokens | None
    including: list[Neighbour]
    excluding: list[Neighbour]
    expected_cosine: float | None = None
    expected_rank_all: int | None = None          # among all 49,152 tokens
    expected_rank_excluding: int | None = None    # with the input tokens left out
    # Without arithmetic: the expected answer's (rank, cosine) among the neighbours of a alone and of c
    # alone, inputs left out. If one of these is already 1, the arithmetic added little.
    baseline_a: tuple[int, float] | None = None
    baseline_c: tuple[int, float] | None = None

    @property
    def expected_id(self) -> int | None:
        """The expected answer's token id when it is one token (only then does it have a rank)."""
        return self.expected.ids[0] if self.expected and len(self.expected.ids) == 1 else None

    def is_input_variant(self, text: str) -> bool:
        """The token is one of the input words, in any spelling or capitalisation."""
        return any(same_word(text, w.word) for w in (self.a, self.b, self.c))

    def role(self, row: Neighbour) -> str:
        """How a ranked row relates to the question: input, expected, variant (of an input) or other."""
        if row.is_query:
            return "input"
        if row.id == self.expected_id:
            return "expected"
        return "variant" if self.is_input_variant(row.text) else "other"


def solve_analogy(lm: LiveModel, normalized: np.ndarray, a: str, b: str, c: str, expected: str = "",
                  leading_space: bool = True, k: int = 10) -> AnalogyResult | None:
    """a - b + c over the whole vocabulary, reported with and without the inputs, and the expected answer's rank.

    Returns None when one of a, b, c is empty.
    """
    words = [lookup_word(lm, w, leading_space) for w in (a, b, c)]
    if any(not w.ids for w in words):
        return None
    wa, wb, wc = words
    matrix = embedding_matrix(lm)
    result = analogy(matrix, normalized, wa.ids, wb.ids, wc.ids, k)
    inputs = set(result.input_ids)

    def named(pairs: list[tuple[int, float]]) -> list[Neighbour]:
        texts = token_texts(lm, [i for i, _ in pairs])
        return [Neighbour(i, t, cos, i in inputs, False) for (i, cos), t in zip(pairs, texts)]

    we = lookup_word(lm, expected, leading_space) if expected and expected.strip() else None
    extra = {}
    if we is not None and we.ids:
        if len(we.ids) == 1:
            target = we.ids[0]
            extra = dict(expected_cosine=float(result.scores[target]),
                         expected_rank_all=rank_of(result.scores, target))
            if target not in inputs:
                extra["expected_rank_excluding"] = rank_of(result.scores, target, exclude=result.input_ids)
                for name, word in (("baseline_a", wa), ("baseline_c", wc)):
                    alone = cosine_scores(normalized, word_vector(matrix, word.ids))
                    extra[name] = (rank_of(alone, target, exclude=result.input_ids), float(alone[target]))
        else:   # a word of several tokens is no single row of the vocabulary: no rank, but a cosine
            extra = dict(expected_cosine=_cosine(result.vector, word_vector(matrix, we.ids)))
    return AnalogyResult(wa, wb, wc, we, named(result.including), named(result.excluding), **extra)


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    return float(u @ v / (nu * nv)) if nu and nv else 0.0


def umap_is_warm() -> bool:
    """True once UMAP has run in this process (its first call compiles numba code and takes seconds)."""
    return _umap_warm


def warm_umap() -> float:
    """Run UMAP once on a few random points so numba compiles now, not on a reader's first request."""
    import time
    global _umap_warm
    started = time.perf_counter()
    points = np.random.default_rng(0).normal(size=(40, 16))
    project(points, "umap", 2, gated=False)
    project(points, "umap", 3, gated=False)
    _umap_warm = True
    return time.perf_counter() - started
