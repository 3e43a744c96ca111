"""Retrieval engine: chunking and the on-disk index, exact search against numpy, faiss indexes measured against
exact search, and the RAG prompts and scores on the live model."""
import hashlib

import numpy as np
import pytest

from engine.decoding.strategies import sequence_logprob
from engine.retrieval.ann import (IndexSpec, IndexStopped, IndexStore, approximate_neighbours, build_index,
                                  effective_nlist, measure, query_rows, search_grid)
from engine.retrieval.chunks import (BuildStopped, Chunk, build_chunk_index, chunk_concept, chunk_corpus,
                                     corpus_fingerprint, index_folder, load_chunk_index)
from engine.retrieval.exact import compare_metrics, exact_neighbours_of_rows, exact_search, recall_at_k
from engine.retrieval.rag import (contains_reference, gold_index, positions_order, rag_prompt, reference_logprobs,
                                  run_rag, user_message)
from engine.tokens.offsets import token_ids

PAGE = """+++
title = "Toy concept"
summary = "A short summary of the toy."

[[quiz]]
question = "Quiz text that must not be retrieved?"
options = ["a", "b"]
answer = 0
why = "because"
+++

## Intuition

First sentence here. Second sentence is a little longer than the first one. Third!

**Analogy.** A toy is like a toy.

## How it works

Some text before a formula.

$$
a = b + c \\times d
$$

- one item in a list
- another item in the list

## In the wild

- A fact with a source (Someone 2020).
"""


def words_of(text: str) -> list[str]:
    return text.split()


def test_chunks_respect_sections_size_and_keep_every_word():
    for size in (5, 8, 40):
        chunks = chunk_concept("toy", PAGE, size)
        assert [c.section for c in chunks][0] == "Summary"
        assert {c.section for c in chunks} == {"Summary", "Intuition", "How it works", "In the wild"}
        assert all(c.words <= size and c.words == len(c.text.split()) for c in chunks)
        assert all(c.title == "Toy concept" and c.slug == "toy" for c in chunks)
        assert not any("Quiz text" in c.text for c in chunks)
        intuition = [w for c in chunks if c.section == "Intuition" for w in words_of(c.text)]
        assert intuition == words_of("First sentence here. Second sentence is a little longer than the first one. "
                                     "Third! **Analogy.** A toy is like a toy.")
    whole = chunk_concept("toy", PAGE, 40)
    assert any(c.text.startswith("Some text before a formula. $$ a = b + c") for c in whole)   # formula kept whole
    assert chunk_concept("toy", PAGE, 40)[0].embed_text == "Toy concept: A short summary of the toy."


def test_fingerprint_follows_the_text():
    files = {"a": PAGE, "b": PAGE.replace("toy", "game")}
    assert corpus_fingerprint(files) == corpus_fingerprint(dict(reversed(list(files.items()))))
    assert corpus_fingerprint(files) != corpus_fingerprint({**files, "b": files["b"] + "x"})
    assert corpus_fingerprint(files) != corpus_fingerprint({"a": PAGE})


def fake_embed(calls: list):
    """Deterministic unit vectors from a hash of the text, recording what was encoded."""
    def embed(texts):
        calls.extend(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest() * 2, dtype=np.uint8)[:16].astype(np.float32) - 127
                for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows])
    return embed


def test_index_is_built_once_kept_on_disk_and_rebuilt_incrementally(tmp_path):
    files = {"toy": PAGE, "other": PAGE.replace("Toy concept", "Other concept")}
    assert load_chunk_index(8, files, root=tmp_path) is None
    calls: list = []
    built = build_chunk_index(fake_embed(calls), 8, files, root=tmp_path)
    chunks = chunk_corpus(files, 8)
    assert len(calls) == len({c.embed_text for c in chunks}) and built.chunks == tuple(chunks)
    loaded = load_chunk_index(8, files, root=tmp_path)
    assert loaded.fingerprint == built.fingerprint and loaded.chunks == built.chunks
    np.testing.assert_array_equal(loaded.vectors, built.vectors)
    assert not loaded.vectors.flags.writeable

    changed = {**files, "other": files["other"].replace("Third!", "Third, and changed!")}
    calls.clear()
    rebuilt = build_chunk_index(fake_embed(calls), 8, changed, root=tmp_path)
    new_texts = {c.embed_text for c in chunk_corpus(changed, 8)} - {c.embed_text for c in chunks}
    assert set(calls) == new_texts and 0 < len(calls) < len(rebuilt.chunks)      # only the changed chunks
    assert load_chunk_index(8, files, root=tmp_path) is None                     # the stale file is gone
    assert len(list(index_folder(tmp_path).glob("*.npz"))) == 1
    again = fake_embed([])([c.embed_text for c in rebuilt.chunks])
    np.testing.assert_allclose(rebuilt.vectors, again, rtol=1e-6)                 # reused rows are the right ones


def test_a_stopped_build_writes_nothing(tmp_path):
    with pytest.raises(BuildStopped):
        build_chunk_index(fake_embed([]), 8, {"toy": PAGE}, root=tmp_path, should_stop=lambda: True)
    assert not list(index_folder(tmp_path).glob("*"))


def random_unit(n: int, d: int, seed: int = 0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_is_the_brute_force_cosine_ranking():
    x = random_unit(2000, 24)
    q = np.random.default_rng(1).standard_normal(24)
    cos = (x.astype(np.float64) @ q) / np.linalg.norm(q)
    expected = np.argsort(-cos, kind="stable")
    hits = exact_search(x, q, 10)
    assert list(hits.ids) == expected[:10].tolist()
    np.testing.assert_allclose(hits.scores, cos[expected[:10]], atol=1e-6)
    skipped = exact_search(x, q, 10, exclude=expected[:3])
    assert list(skipped.ids) == expected[3:13].tolist()
    rows = np.array([0, 5, 17])
    neighbours = exact_neighbours_of_rows(x, rows, 5)
    for row, found in zip(rows, neighbours):
        order = [i for i in np.argsort(-(x.astype(np.float64) @ x[row]), kind="stable") if i != row]
        assert found.tolist() == order[:5]


def test_the_three_measures_agree_on_unit_vectors_and_part_on_lengths():
    x = random_unit(500, 16)
    q = x[3] + 0.1
    same = compare_metrics(x, q / np.linalg.norm(q), 8)
    assert same["cosine"].ids == same["dot"].ids == same["euclidean"].ids
    lengths = np.random.default_rng(2).uniform(0.5, 5.0, 500).astype(np.float32)
    raw = x * lengths[:, None]
    ranks = compare_metrics(raw, q, 8)
    assert ranks["dot"].mean_length > ranks["cosine"].mean_length > ranks["euclidean"].mean_length
    i = ranks["euclidean"].ids[0]
    assert ranks["euclidean"].values[0] == pytest.approx(float(np.linalg.norm(raw[i] - q)), rel=1e-5)
    assert ranks["cosine"].ids == exact_search(x, q, 8).ids


def test_recall_at_k_is_the_overlap_share():
    assert recall_at_k([3, 8, 20, 41, 57], [3, 8, 12, 20, 41], 5) == pytest.approx(0.8)
    assert recall_at_k([1, 2], [3, 4], 2) == 0.0


@pytest.mark.parametrize("spec", [IndexSpec("hnsw", 16), IndexSpec("ivf", 64)])
def test_indexes_are_measured_against_exact_search(spec):
    x = random_unit(3000, 32)
    built = build_index(x, spec)
    assert built.n == 3000 and built.bytes > x.nbytes
    sweep = measure(built, x, 10)
    assert sweep.complete and sweep.values == search_grid(spec, 3000) and sweep.queries == len(query_rows(3000))
    assert all(q > 0 for q in sweep.qps) and sweep.exact_qps > 0
    assert sweep.recall[-1] >= sweep.recall[0] and sweep.recall[-1] > 0.9
    if spec.kind == "ivf":
        assert sweep.values[-1] == effective_nlist(64, 3000) == 64
        assert sweep.recall[-1] == pytest.approx(1.0)          # every cluster scanned: the exact answer
    # Recomputed independently: the index's answer for the test rows (own row left out) against numpy.
    rows = query_rows(3000)
    truth = exact_neighbours_of_rows(x, rows, 10)
    first = []
    for row, t in zip(rows, truth):
        found, _ = approximate_neighbours(built, x[row], 10, sweep.values[0], exclude=[row])
        first.append(recall_at_k(found, t, 10))
    assert np.mean(first) == pytest.approx(sweep.recall[0])


def test_search_settings_never_touch_the_shared_index():
    x = random_unit(1500, 16)
    built = build_index(x, IndexSpec("hnsw", 8))
    before = built.index.hnsw.efSearch
    approximate_neighbours(built, x[0], 5, 256)
    assert built.index.hnsw.efSearch == before
    with pytest.raises(IndexStopped):
        build_index(x, IndexSpec("hnsw", 8), should_stop=lambda: True)


def test_small_sets_cap_the_clusters_and_the_store_is_bounded():
    assert effective_nlist(1024, 486) == 12 and effective_nlist(64, 100_000) == 64 and effective_nlist(64, 10) == 1
    assert search_grid(IndexSpec("ivf", 1024), 486) == (1, 2, 4, 8, 12)
    store = IndexStore(max_entries=2)
    for key in "abc":
        store.put(key, object())
    assert len(store) == 2 and store.get("a") is None and store.get("c") is not None


CHUNKS = [Chunk("kv-cache", "The KV cache", "How it works", "The cache takes 45 KiB per token in float32.", 9),
          Chunk("temperature", "Temperature", "In the wild", "OpenAI's API accepts temperature from 0 to 2.", 8),
          Chunk("rope", "RoPE", "Intuition", "Positions are rotations of query and key vectors.", 8)]


def test_prompts_differ_only_by_the_context():
    plain, augmented = user_message("Q?", []), user_message("Q?", CHUNKS[:2])
    assert "Question: Q?" in plain and "Question: Q?" in augmented and "Excerpts" not in plain
    assert "[1] The KV cache (How it works): The cache takes 45 KiB" in augmented and "[2] Temperature" in augmented
    assert contains_reference(CHUNKS[1], "0  TO 2") and not contains_reference(CHUNKS[0], "0 to 2")
    assert not contains_reference(CHUNKS[0], "   ")
    assert gold_index(CHUNKS, [2, 1, 0], "45 kib") == 0 and gold_index(CHUNKS, [0, 1, 2], "nowhere") is None
    assert positions_order([5, 7, 9], 7, 3) == [[7, 5, 9], [5, 7, 9], [5, 9, 7]]
    assert positions_order([5, 7, 9], 2, 3) == [[2, 5, 7], [5, 2, 7], [5, 7, 2]]   # gold not retrieved: inserted


def test_reference_probability_is_the_models_own(lm):
    prompt = rag_prompt(lm, "What temperature range does OpenAI's API accept?", CHUNKS[1:2])
    assert prompt.endswith("<|im_start|>assistant\n")
    ids, logprobs = reference_logprobs(lm, prompt, "0 to 2")
    assert list(ids) == token_ids(lm, "0 to 2") and len(logprobs) == len(ids) and np.all(logprobs < 0)
    assert logprobs.sum() == pytest.approx(sequence_logprob(lm, token_ids(lm, prompt), list(ids)), abs=1e-4)


def test_run_rag_answers_both_ways_and_moves_the_gold_chunk(lm):
    run = run_rag(lm, "What temperature range does OpenAI's API accept?", "0 to 2", CHUNKS, (1, 0), (1, 0, 2), 6)
    assert run.complete and run.gold == 1
    assert run.with_context.prompt_tokens > run.without.prompt_tokens
    assert run.without.answer is not None and run.with_context.answer_tokens <= 6
    assert len(run.position_logprobs) == 2
    assert run.position_logprobs[0] == pytest.approx(run.with_context.reference_logprob, abs=1e-4)  # same order
    stopped = run_rag(lm, "Q?", "0 to 2", CHUNKS, (1, 0), (1, 0, 2), 4, should_stop=lambda: True)
    assert not stopped.complete and stopped.with_context.answer is None and stopped.position_logprobs == ()
