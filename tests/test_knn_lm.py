"""The kNN-LM engine: exact search agrees with faiss, p_kNN is a distribution, lambda 0 is the model itself,
and the chat budget counts what the chat template really renders."""
import numpy as np
import pytest

from engine.model.perplexity import perplexity
from engine.tokens.offsets import token_ids
from engine.using.chat_template import template_ids
from engine.using.knn_lm import (KEY_KINDS, Memory, Neighbours, build_memory, faiss_nearest, hidden_pass,
                                 knn_distribution, knn_target_prob, mixed_logprob, nearest, neighbour_weights,
                                 perplexity_curve, perplexity_of)
from engine.using.memory_budget import (BUNDLED_CHAT, compare_memory, extractive_summary, first_sentence,
                                        projected_capacity)

DOC = "The lighthouse of Tarrowmere was built in 1871 by Odile Varsk. It flashes green every nine seconds."
QUERY = "Odile Varsk built the lighthouse of Tarrowmere in 1871."


def test_exact_search_matches_faiss_flat_l2():
    rng = np.random.default_rng(0)
    memory = Memory(keys=rng.normal(size=(200, 32)).astype(np.float32), values=rng.integers(0, 50, 200))
    queries = rng.normal(size=(17, 32)).astype(np.float32)
    nb = nearest(memory, queries, 10)
    rows, distances = faiss_nearest(memory, queries, 10)
    np.testing.assert_array_equal(nb.rows, rows)
    np.testing.assert_allclose(nb.distances, distances, rtol=1e-4)
    assert np.all(np.diff(nb.distances, axis=1) >= 0)   # closest first


def test_k_larger_than_memory_keeps_everything():
    memory = Memory(keys=np.eye(3, dtype=np.float32), values=np.array([5, 6, 7]))
    nb = nearest(memory, np.array([[1.0, 0, 0]], np.float32), 64)
    assert nb.rows.tolist() == [[0, 1, 2]] and nb.distances[0, 0] == 0.0


def test_knn_distribution_sums_to_one_and_matches_target_prob():
    memory = Memory(keys=np.zeros((4, 2), np.float32), values=np.array([9, 9, 3, 9]))
    nb = Neighbours(rows=np.array([[0, 1, 2, 3]]), distances=np.array([[100.0, 120.0, 300.0, 400.0]]))
    dist = knn_distribution(memory, nb, 0, 4, 100.0)
    assert sum(dist.values()) == pytest.approx(1.0) and list(dist) == [9, 3]
    # the worked example of the concept page: 0.368 + 0.301 + 0.018 over 0.737
    assert dist[9] == pytest.approx(0.93, abs=0.005)
    assert knn_target_prob(memory, nb, [9], 4, 100.0)[0] == pytest.approx(dist[9])
    assert knn_target_prob(memory, nb, [42], 4, 100.0)[0] == 0.0
    # k = 1 at any temperature: the nearest entry decides alone
    assert knn_target_prob(memory, nb, [9], 1, 1e6)[0] == pytest.approx(1.0)
    w = neighbour_weights(nb.distances, 4, 1e9)
    np.testing.assert_allclose(w, 0.25, rtol=1e-6)   # a huge temperature: an equal vote


def test_mixture_endpoints_and_middle():
    lm_lp = np.log(np.array([0.5, 0.01, 0.2]))
    knn = np.array([0.0, 0.9, 1.0])
    assert np.array_equal(mixed_logprob(lm_lp, knn, 0.0), lm_lp)          # the model itself, bit for bit
    assert mixed_logprob(lm_lp, knn, 1.0)[0] == -np.inf                    # the memory never saw token 0
    np.testing.assert_allclose(np.exp(mixed_logprob(lm_lp, knn, 0.25)), 0.25 * knn + 0.75 * np.exp(lm_lp))
    assert perplexity_of(mixed_logprob(lm_lp, knn, 1.0)) == np.inf
    curve = perplexity_curve(lm_lp, knn, [0.0, 0.5])
    assert curve[0] == pytest.approx(np.exp(-lm_lp.mean()))


def test_hidden_pass_scores_like_the_perplexity_module(lm):
    ids = token_ids(lm, QUERY)
    hp = hidden_pass(lm, ids)
    own = perplexity(lm, ids)
    np.testing.assert_array_equal(hp.target_logprob, -own.token_nll.astype(np.float64))
    assert perplexity_of(mixed_logprob(hp.target_logprob, np.ones(len(ids) - 1), 0.0)) == pytest.approx(
        own.perplexity, rel=1e-6)
    assert set(hp.keys) == set(KEY_KINDS) and hp.keys["final_norm"].shape == (len(ids), lm.model.config.hidden_size)
    assert not hp.keys["final_norm"].flags.writeable
    # the LM head reads the final norm: its product with the tied embeddings gives the logits' argmax
    head = lm.model.lm_head.weight.detach().numpy()
    assert np.array_equal((hp.keys["final_norm"][:-1] @ head.T).argmax(-1), hp.top_ids[:, 0])


def test_a_query_equal_to_the_document_retrieves_its_own_positions(lm):
    doc = hidden_pass(lm, token_ids(lm, DOC))
    for kind in KEY_KINDS:
        memory = build_memory(doc, kind)
        assert memory.values.tolist() == list(doc.ids[1:])
        nb = nearest(memory, doc.keys[kind][:-1], 4)
        assert nb.rows[:, 0].tolist() == list(range(memory.size))
        np.testing.assert_allclose(nb.distances[:, 0], 0.0, atol=1e-3)
        p = knn_target_prob(memory, nb, doc.ids[1:], 4, 1e-3)
        np.testing.assert_allclose(p, 1.0)


def test_chat_budget_counts_the_rendered_template(lm):
    c = compare_memory(lm, list(BUNDLED_CHAT), 4)
    assert c.full.total == len(template_ids(lm, list(BUNDLED_CHAT)))
    assert sum(s.tokens for s in c.full.segments) == c.full.total
    summarised = list(BUNDLED_CHAT[:1]) + [{"role": "system", "content": c.summary_text}] + list(BUNDLED_CHAT[-4:])
    assert c.summarised.total == len(template_ids(lm, summarised))
    assert c.full.window == lm.model.config.max_position_embeddings
    assert c.kept_messages == 4 and c.summarised_messages == len(BUNDLED_CHAT) - 1 - 4
    assert 0 < c.saved < c.full.total
    verbatim, summarised_fit = projected_capacity(c)
    assert summarised_fit > verbatim > 0
    everything = compare_memory(lm, list(BUNDLED_CHAT), 99)
    assert everything.saved == 0 and everything.summary_text == ""


def test_extractive_summary_skips_empty_sentences():
    assert first_sentence("Yes. Use free-standing supports in a tall pot.") == "Use free-standing supports in a tall pot."
    assert first_sentence("one two three four five", words=3) == "one two three ..."
    text = extractive_summary([{"role": "user", "content": "Hi! I grow beans on a balcony. More."}])
    assert text.splitlines()[1] == "- user: I grow beans on a balcony."


def test_charts_keep_each_rows_order_and_drop_infinite_points():
    from charts.knn_lm import budget_bars, perplexity_vs_lambda
    fig = budget_bars(["full", "short"], [[("System", 10), ("Older", 50), ("Recent", 30)],
                                          [("System", 10), ("Summary", 20), ("Recent", 30)]], 1000)
    assert [t.name for t in fig.data] == ["System", "Summary", "Older", "Recent", "Free in the window"]
    assert list(fig.data[-1].x) == [910, 940]
    fig = perplexity_vs_lambda([0, 0.5, 1], [100.0, 20.0, np.inf], 1.0, np.inf)
    assert list(fig.data[0].y) == [100.0, 20.0, None]
    assert [t.name for t in fig.data] == ["kNN-LM", "model alone: 100.00"]   # no marker at an infinite point
