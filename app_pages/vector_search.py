from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.vector_search import metric_lengths, neighbour_bars, recall_qps_curve
from engine.runtime.jobs import JobState
from engine.retrieval.ann import (BUILD_CHOICES, DEFAULT_BUILD, DEFAULT_SEARCH, EF_CONSTRUCTION, KIND_NAMES, KINDS,
                                  IndexSpec, Sweep, approximate_neighbours, effective_nlist, search_grid)
from engine.retrieval.chunks import CHUNK_SIZES, DEFAULT_CHUNK_SIZE
from engine.retrieval.exact import METRIC_NAMES, METRICS, compare_metrics, exact_search, overlap
from ui import concept_page, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty
from ui.jobs import follow
from ui.layout import metric_row
from ui.retrieval import chunk_index, corpus, query_vector
from ui.text import escape_markdown, human_bytes
from ui.vector_search import (TOKEN_SET_KEY, SweepStopped, built_index, chunk_set, mean_direction_cosine,
                              sweep_job, token_query, token_set)

SETS = {"tokens": "SmolLM2's token embeddings", "chunks": "The handbook's chunks (MiniLM)"}
DEFAULT_QUERIES = {"tokens": "ocean", "chunks": "How does the KV cache save memory?"}
AGAIN = "_vector_search_again"
BUILD_KEYS, SEARCH_KEYS = {"hnsw": "m", "ivf": "nlist"}, {"hnsw": "ef", "ivf": "nprobe"}


def set_of(label: str | None) -> str:
    return "chunks" if label == SETS["chunks"] else "tokens"


def swap_example_query() -> None:
    """Switching the set swaps an untouched example query for the other set's; typed text stays."""
    if st.session_state.get("query", "").strip() in ("", *DEFAULT_QUERIES.values()):
        st.session_state["query"] = DEFAULT_QUERIES[set_of(st.session_state.get("set"))]


def measure_again() -> None:
    st.session_state[AGAIN] = True


def kept_in(key: str, options) -> None:
    """A value kept from before (another index, a smaller set) that the new options lack falls back."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def show_measures(vectors, qv: np.ndarray, exclude: tuple, k: int) -> None:
    """Cosine, dot product and Euclidean distance side by side on the same query."""
    n, dim = vectors.unit.shape
    ranks = compare_metrics(vectors.raw, qv, k, exclude, vectors.lengths)
    shared = {x: overlap(ranks["cosine"].ids, ranks[x].ids) for x in METRICS}
    agree_dot, agree_l2 = shared["dot"], shared["euclidean"]
    m = metric_row(3)
    m[0].metric("Cosine and dot product share", f"{agree_dot} of {k}", help="Of the k nearest under each measure.")
    m[1].metric("Cosine and Euclidean share", f"{agree_l2} of {k}")
    m[2].metric("Vector lengths in this set", f"{vectors.lengths.min():.2f} to {vectors.lengths.max():.2f}",
                help=f"Euclidean length of each of the {n:,} stored vectors ({dim} numbers each), measured.")
    show_chart(figure(metric_lengths, [METRIC_NAMES[x] for x in METRICS], [ranks[x].mean_length for x in METRICS],
                      float(vectors.lengths.mean()), [shared[x] for x in METRICS], k,
                      title=f"Mean length of the {k} vectors each measure picks"),
               partial(pd.DataFrame, {"measure": [METRIC_NAMES[x] for x in METRICS],
                                      "mean_length_of_top_k": [ranks[x].mean_length for x in METRICS],
                                      "shared_with_cosine": [shared[x] for x in METRICS],
                                      "set_mean_length": float(vectors.lengths.mean())}),
               name="closeness-measures", key="measures")
    table = {"rank": range(1, k + 1)}
    for x in METRICS:
        table[METRIC_NAMES[x]] = vectors.labels(list(ranks[x].ids))
        table[f"{x} value"] = ranks[x].values
    with st.expander(f"The {k} nearest under each measure, side by side"):
        st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    if np.allclose(vectors.lengths, 1.0, atol=1e-3):
        st.caption("Every MiniLM vector has length 1, so the three measures rank alike: |a − b|² = 2 − 2 a·b.")
    else:
        st.caption("Dot product rewards long vectors, Euclidean distance short ones near the query; cosine looks "
                   "at the direction alone. Sentence encoders output unit vectors, which makes the three agree.")


def show_index(vectors, qv: np.ndarray, exclude: tuple, k: int) -> None:
    """Exact search drawn at once; the index built and measured as a job; the reader's query through it."""
    n = vectors.unit.shape[0]
    a, b, c = st.columns([1.2, 1, 1])
    kind_name = a.radio("Index (faiss)", [KIND_NAMES[x] for x in KINDS], key="index", bind="query-params",
                        help="HNSW walks a graph of near neighbours; IVF scans only the clusters nearest the query.")
    kind = next((x for x in KINDS if KIND_NAMES[x] == kind_name), "hnsw")
    build = b.select_slider("M: links per vector" if kind == "hnsw" else "nlist: clusters", BUILD_CHOICES[kind],
                            value=DEFAULT_BUILD[kind], key=BUILD_KEYS[kind], bind="query-params",
                            help="Set when the index is built: more links (HNSW) or clusters (IVF) cost build time.")
    spec = IndexSpec(kind, int(build))
    grid = search_grid(spec, n)
    kept_in(SEARCH_KEYS[kind], grid)
    target = DEFAULT_SEARCH["hnsw"] if kind == "hnsw" else max(1, grid[-1] // 16)   # IVF: a sixteenth of the lists
    search_kwargs = {} if SEARCH_KEYS[kind] in st.session_state else {
        "value": min(grid, key=lambda v: abs(v - target))}
    chosen = c.select_slider(f"{spec.search_name}: " + ("candidates kept" if kind == "hnsw" else "clusters scanned"),
                             grid, key=SEARCH_KEYS[kind], bind="query-params", **search_kwargs,
                             help="Set per query: larger finds more of the true neighbours, slower.")
    if kind == "ivf" and effective_nlist(spec.build, n) < spec.build:
        st.caption(f"With {n:,} vectors, nlist is capped at {effective_nlist(spec.build, n)} (at least 39 vectors "
                   "per cluster, so k-means can place them).")

    exact = exact_search(vectors.unit, qv, k, exclude)
    job = sweep_job(vectors, spec, k, fresh=bool(st.session_state.pop(AGAIN, False)))
    if job.state is JobState.DONE and isinstance(job.result, Sweep) and built_index(vectors, spec) is None:
        job = sweep_job(vectors, spec, k, fresh=True)   # the index was dropped from the bounded store: rebuild
    built = built_index(vectors, spec) if job.state is JobState.DONE else None
    approx_ids, approx_scores = approximate_neighbours(built, qv, k, chosen, exclude) if built else (None, None)
    found = [i in approx_ids for i in exact.ids] if approx_ids is not None else None
    labels = vectors.labels(list(exact.ids))
    show_chart(figure(neighbour_bars, [f"{r}. {s}" for r, s in enumerate(labels, 1)], list(exact.scores), found,
                      title=f"Your query's {k} nearest by exact search, of {n - len(exclude):,} vectors"
                            + (f"; {spec.kind.upper()} found {sum(found)}" if found is not None else "")),
               partial(pd.DataFrame, {"rank": range(1, k + 1), "id": exact.ids, "label": labels, "cosine": exact.scores,
                                      "found_by_index": found if found is not None else [None] * k}),
               name="exact-neighbours", key="exact")

    result = follow(job, what=f"{spec.kind.upper()} build and measurement")
    if isinstance(result, SweepStopped):
        st.warning(f"The build was stopped ({escape_markdown(result.message)}), so there is no index to search.",
                   icon=":material/stop_circle:")
    if isinstance(result, Sweep) and approx_ids is not None:
        mine = overlap(approx_ids, exact.ids)
        at = result.values.index(chosen) if chosen in result.values else None
        m = metric_row(5)
        m[0].metric(f"Recall@{k}, your query", f"{mine / k:.2f}", f"{mine} of {k} found", delta_color="off",
                    delta_arrow="off", help="Of the exact k nearest, the share the index returned for your query.")
        m[1].metric(f"Mean recall@{k}", f"{result.recall[at]:.3f}" if at is not None else "not measured",
                    f"over {result.queries} test queries", delta_color="off", delta_arrow="off",
                    help="Stored vectors used as queries (each one's own row left out), the same for every index.")
        m[2].metric(f"Queries/s at {spec.search_name} = {chosen}",
                    f"{result.qps[at]:,.0f}" if at is not None else "not measured",
                    f"×{result.qps[at] / result.exact_qps:,.1f} vs exact" if at is not None else None,
                    delta_color="off", delta_arrow="off", help="One query at a time on one thread, measured here.")
        m[3].metric("Exact search, queries/s", f"{result.exact_qps:,.0f}",
                    help="A matrix-vector product over every vector and a partial sort, timed the same way.")
        build_s = result.build_seconds
        m[4].metric("Index build", f"{build_s:.1f} s" if build_s >= 1 else f"{1000 * build_s:.0f} ms",
                    f"{human_bytes(result.index_bytes)} "
                    f"({human_bytes(result.flat_bytes)} raw)", delta_color="off", delta_arrow="off",
                    help="Measured when the index was built on this server. Size: the serialized index.")
        in_exact = set(exact.ids)
        st.dataframe(pd.DataFrame({
            "rank": range(1, k + 1), "exact: id": exact.ids, "exact": labels, "exact cosine": exact.scores,
            "index: id": list(approx_ids) + [None] * (k - len(approx_ids)),
            "index": vectors.labels(list(approx_ids)) + [""] * (k - len(approx_ids)),
            "index cosine": list(approx_scores) + [None] * (k - len(approx_ids)),
            "in the exact top k": [i in in_exact for i in approx_ids] + [False] * (k - len(approx_ids))}),
            hide_index=True, width="stretch", key="neighbours")
        kth = exact.scores[-1]
        ties = sum(1 for i, score in zip(approx_ids, approx_scores) if i not in in_exact and score >= kth - 1e-4)
        if ties:
            st.caption(f"{ties} of the index's answers score as high as the exact {k}th neighbour ({kth:.4f}): "
                       "equally close rows" + (" (some of SmolLM2's rarely used tokens have identical embeddings)"
                                               if vectors.key == TOKEN_SET_KEY else "")
                       + " that recall counts as misses, since recall compares which rows were returned.")
        show_chart(figure(recall_qps_curve, result.values, result.recall, result.qps, result.exact_qps, chosen,
                          spec.search_name, result.k,
                          title=f"Recall@{k} against speed, {spec.kind.upper()} {spec.build_name} = "
                                f"{result.clusters or spec.build} over {n:,} vectors"),
                   partial(pd.DataFrame, {spec.search_name: result.values, f"recall_at_{k}": result.recall,
                                          "queries_per_second": result.qps,
                                          "exact_queries_per_second": result.exact_qps}),
                   name=f"recall-vs-qps-{spec.kind}-{spec.build}", key="curve")
        best = int(np.argmax(result.recall)) if result.recall else None
        if best is not None:
            speed = result.qps[best] / result.exact_qps
            slower = " (slower: with this few vectors a plain scan wins)" if speed < 1 else ""
            settings = f" Built with efConstruction {EF_CONSTRUCTION}, faiss's default." if kind == "hnsw" else ""
            st.markdown(f"Measured: at {spec.search_name} = {result.values[best]} the index returns "
                        f"**{100 * result.recall[best]:.1f}%** of the true {k} nearest, at **{speed:,.1f}×** "
                        f"the speed of exact search{slower}.{settings}")
        st.caption("Timings come from this shared two-core server, one query at a time on one thread, so they move "
                   "a little between runs; recall does not. Recall depends on the data as much as on the index: "
                   f"these vectors' mean cosine with their average direction is {mean_direction_cosine(vectors):.2f} "
                   "(measured; near 0 means spread in every direction, near 1 all leaning one way). Compare the "
                   "two sets at the same settings.")
        st.button("Measure again", key="again", on_click=measure_again, icon=":material/replay:",
                  help="Rebuild nothing; time and count again (the index stays built).")


with concept_page("vector-search"):
    set_label = st.radio("Vectors to search", list(SETS.values()), horizontal=True, key="set", bind="query-params",
                         on_change=swap_example_query,
                         help="SmolLM2's input embedding matrix, one row per token of its vocabulary, or the "
                              "handbook's own pages cut into chunks and embedded by the MiniLM sentence encoder.")
    which = set_of(set_label)
    query = prompt_input("query", DEFAULT_QUERIES[which], "Your query", max_chars=200, max_tokens=48,
                         help="Token embeddings: the mean of your text's token rows. Chunks: MiniLM's vector of "
                              "your text. Up to 48 tokens.")
    left, right = st.columns(2)
    k = left.slider("k: neighbours to find", 1, 50, 10, key="k", bind="query-params",
                    help="How many nearest vectors each search returns. Recall@k compares these k.")
    size = DEFAULT_CHUNK_SIZE
    if which == "chunks":
        size = right.select_slider("Chunk size (words)", CHUNK_SIZES, value=DEFAULT_CHUNK_SIZE, key="chunk",
                                   bind="query-params", help="Longest chunk, in words; each size is its own set of "
                                   "vectors (encoded once and kept on disk).")
    stop_if_empty(query, "Type a query, a word or a question, to search the vectors for its nearest neighbours.")

    if which == "tokens":
        vectors = token_set()
        qv, exclude = token_query(query)
        own = ", ".join(vectors.labels(list(exclude)))
        st.caption(f"Your query vector is the mean of the embedding rows of its tokens: {escape_markdown(own)}. "
                   "Those rows are left out of every answer, as they would win trivially.")
    else:
        index = chunk_index(size, corpus()[1])
        if index is None:
            st.info("The handbook's chunks need their MiniLM vectors first (once per text version). The search "
                    "runs as soon as they are ready.", icon=":material/hourglass_top:")
            vectors = None
        else:
            vectors, qv, exclude = chunk_set(index), query_vector(query), ()
    if vectors is not None:
        k = min(k, vectors.unit.shape[0] - len(exclude) - 1)
        st.subheader("Three ways to measure closeness", anchor="metrics")
        show_measures(vectors, qv, exclude, k)
        st.subheader("Exact search against an approximate index", anchor="ann")
        show_index(vectors, qv, exclude, k)
