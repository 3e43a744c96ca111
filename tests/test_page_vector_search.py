"""The vector-search page: exact search equals a brute-force numpy ranking, the index's answers and recall are
recomputed from the same faiss index, moving the search setting runs no job, and bad links fall back."""
import html
import json
import time

import faiss
import numpy as np
import pytest

import ui.vector_search
from engine.model.encoder import embed_sentences, load_encoder
from engine.inside.embeddings import embedding_matrix
from engine.retrieval.ann import IndexSpec, index_store, query_rows
from engine.retrieval.chunks import load_chunk_index
from engine.tokens.offsets import decode_each, token_ids, visible
from tests.pages import assert_no_exception, open_page, run_until, shown_text

TOKENS = "SmolLM2's token embeddings"
CHUNKS = "The handbook's chunks (MiniLM)"
TOKEN_KEY = "smollm2-token-embeddings"


def chart(at, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}"))


def metric(at, start: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(start))


def neighbour_table(at):
    return next(d.value for d in at.dataframe if "exact: id" in d.value.columns)


def measured(at) -> bool:
    return bool(at.exception) or any(m.label.startswith("Recall@") for m in at.metric) or any(
        "stopped with an error" in str(e.value) for e in at.error)


def exact_chart_rows(at) -> list[tuple[int, str, float]]:
    """(rank, label, score) of every bar of the exact-neighbours chart, in rank order."""
    rows = []
    for trace in chart(at, "exact")["data"]:
        rows += [(cd[0], y, x) for y, x, cd in zip(trace["y"], trace["x"], trace["customdata"])]
    return sorted(rows)


def brute_force(unit64: np.ndarray, query: np.ndarray, k: int, exclude=()) -> tuple[list[int], np.ndarray]:
    cos = unit64 @ (query / np.linalg.norm(query))
    cos[list(exclude)] = -np.inf
    order = np.argsort(-cos, kind="stable")[:k]
    return order.tolist(), cos[order]


def recall_from_faiss(index, unit: np.ndarray, params, k: int) -> float:
    """Mean recall@k over the page's test rows, recomputed: faiss's answer against a float64 numpy ranking."""
    rows = query_rows(unit.shape[0])
    unit64 = unit.astype(np.float64)
    _, found = index.search(np.ascontiguousarray(unit[rows]), k + 1, params=params)
    recalls = []
    for row, ids in zip(rows, found):
        truth = set(brute_force(unit64, unit64[row], k, exclude=[row])[0])
        recalls.append(len(truth & {int(i) for i in ids if i != row and i >= 0}) / k)
    return float(np.mean(recalls))


def test_defaults_exact_then_hnsw_measured_against_it(lm):
    at = open_page("vector-search")
    assert_no_exception(at)
    assert at.radio(key="set").value == TOKENS and at.text_input(key="query").value == "ocean"
    matrix = embedding_matrix(lm).astype(np.float64)
    unit64 = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = token_ids(lm, "ocean")
    query = matrix[ids].mean(axis=0)
    expected, scores = brute_force(unit64, query, 10, exclude=ids)
    rows = exact_chart_rows(at)                       # drawn at once, before the index exists
    assert [r[0] for r in rows] == list(range(1, 11))
    np.testing.assert_allclose([r[2] for r in rows], scores, atol=1e-5)
    assert [html.unescape(r[1].split(". ", 1)[1]) for r in rows] == [visible(t) for t in decode_each(lm, expected)]
    # the three measures, recomputed on the raw rows
    dot = matrix @ query
    dot[ids] = -np.inf
    shared = len(set(expected) & set(np.argsort(-dot)[:10].tolist()))
    assert metric(at, "Cosine and dot product share") == f"{shared} of 10"

    run_until(at, measured, timeout=600)
    assert_no_exception(at)
    table = neighbour_table(at)
    assert table["exact: id"].tolist() == expected
    built = index_store().get((TOKEN_KEY, IndexSpec("hnsw", 16)))
    unit_query = (query / np.linalg.norm(query)).astype(np.float32)[None]
    _, found = built.index.search(unit_query, 10 + len(ids), params=faiss.SearchParametersHNSW(efSearch=64))
    approx = [int(i) for i in found[0] if i not in ids][:10]
    assert table["index: id"].tolist() == approx
    overlap = len(set(approx) & set(expected))
    assert metric(at, "Recall@10, your query") == f"{overlap / 10:.2f}"
    assert table["in the exact top k"].tolist() == [i in expected for i in approx]
    unit = unit64.astype(np.float32)
    recall = recall_from_faiss(built.index, unit, faiss.SearchParametersHNSW(efSearch=64), 10)
    shown = float(metric(at, "Mean recall@10"))
    assert shown == pytest.approx(recall, abs=0.003)   # float32 vs float64 ties among near-duplicate rows
    curve = chart(at, "curve")["data"]
    point = curve[0]["x"][curve[0]["text"].index("64")], curve[0]["y"][curve[0]["text"].index("64")]
    assert f"{point[1]:.3f}" == metric(at, "Mean recall@10")
    assert metric(at, "Queries/s at efSearch = 64") == f"{point[0]:,.0f}"
    assert curve[1]["y"] == [1.0] and metric(at, "Exact search, queries/s") == f"{curve[1]['x'][0]:,.0f}"


def test_moving_the_search_setting_runs_no_job(lm, monkeypatch):
    at = run_until(open_page("vector-search"), measured, timeout=600)
    before = metric(at, "Mean recall@10")

    def no_work(*args, **kwargs):
        raise AssertionError("a build or a measurement ran on a search-setting move")
    monkeypatch.setattr(ui.vector_search, "measure", no_work)
    monkeypatch.setattr(ui.vector_search, "build_index", no_work)
    at.select_slider(key="ef").set_value(512).run()
    time.sleep(0.5)
    at.run()
    assert_no_exception(at)
    assert not at.error
    assert metric(at, "Mean recall@10") != before
    assert "Queries/s at efSearch = 512" in shown_text(at)


def test_share_link_chunks_ivf(lm):
    params = {"set": CHUNKS, "query": "How does the KV cache save memory?", "k": "5", "chunk": "80",
              "index": "IVF clusters", "nlist": "64", "nprobe": "4"}
    at = run_until(open_page("vector-search", params), measured, timeout=900)
    assert_no_exception(at)
    assert at.radio(key="set").value == CHUNKS and at.slider(key="k").value == 5
    assert at.select_slider(key="nprobe").value == 4 and at.select_slider(key="chunk").value == 80
    index = load_chunk_index(80)
    query = embed_sentences(load_encoder(), [params["query"]])[0].astype(np.float64)
    unit64 = index.vectors.astype(np.float64)
    expected, scores = brute_force(unit64, query, 5)
    rows = exact_chart_rows(at)
    assert [int(r[1].rsplit("#", 1)[1].rstrip(")")) for r in rows] == expected
    np.testing.assert_allclose([r[2] for r in rows], scores, atol=1e-5)
    assert metric(at, "Cosine and dot product share") == "5 of 5" == metric(at, "Cosine and Euclidean share")
    table = neighbour_table(at)
    assert table["exact: id"].tolist() == expected
    built = index_store().get((index.key, IndexSpec("ivf", 64)))
    assert built.clusters == index.vectors.shape[0] // 39 and "nlist is capped at" in shown_text(at)
    _, found = built.index.search(query.astype(np.float32)[None], 5, params=faiss.SearchParametersIVF(nprobe=4))
    assert table["index: id"].tolist() == found[0].tolist()
    overlap = len(set(found[0].tolist()) & set(expected))
    assert metric(at, "Recall@5, your query") == f"{overlap / 5:.2f}"
    recall = recall_from_faiss(built.index, index.vectors, faiss.SearchParametersIVF(nprobe=4), 5)
    assert float(metric(at, "Mean recall@5")) == pytest.approx(recall, abs=0.003)


@pytest.mark.parametrize("params", [
    {"query": ""}, {"query": "🍓 <b>x</b> $y$ " * 40}, {"set": "nope", "k": "-3", "index": "x", "m": "7", "ef": "3"},
    {"index": "IVF clusters", "nlist": "1e400", "nprobe": "99999"}, {"k": "9999"},
])
def test_bad_links_fall_back(lm, params):
    at = open_page("vector-search", params)
    assert_no_exception(at)
    if params.get("query") == "":
        assert "Type a query" in shown_text(at)
    else:
        assert chart(at, "exact")["data"]
