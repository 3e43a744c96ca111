"""The embedding engine reads the model's real matrix, never writes it, and computes what it says it does."""
import numpy as np
import pytest

from charts.embeddings import cosine_bars, plain, word_scatter
from engine.inside.embeddings import (MAX_GROUPS, MAX_WORDS_PER_GROUP, analogy, background_ids, cosine_scores,
                               embedding_matrix, group_cohesion, lookup_word, map_words, neighbours,
                               normalize_rows, parse_groups, pca, project, rank_of, solve_analogy, top_k,
                               tsne_perplexity, umap_neighbors, word_vector)


@pytest.fixture(scope="module")
def unit(lm):
    return normalize_rows(embedding_matrix(lm))


def weights(lm):
    return lm.model.model.embed_tokens.weight


def test_matrix_is_the_models_own_and_read_only(lm):
    matrix = embedding_matrix(lm)
    assert matrix.shape == (49152, 576) and matrix.dtype == np.float32
    assert matrix.ctypes.data == weights(lm).data_ptr()          # a view, not a copy
    assert lm.model.lm_head.weight.data_ptr() == weights(lm).data_ptr()   # tied to the output layer
    with pytest.raises(ValueError):
        matrix[0, 0] = 1.0


def test_computations_leave_the_weights_untouched(lm, unit):
    before = weights(lm).detach().clone()
    map_words(lm, "a: king, queen, man, woman, prince, princess", method="pca")
    neighbours(lm, unit, "king")
    solve_analogy(lm, unit, "king", "man", "woman", "queen")
    assert np.array_equal(weights(lm).detach().numpy(), before.numpy())
    assert np.allclose(np.linalg.norm(unit[[0, 4197, 49151]], axis=1), 1.0, atol=1e-5)


def test_words_are_looked_up_with_a_leading_space(lm):
    king = lookup_word(lm, "king")
    assert king.form == " king" and king.pieces == (" king",) and not king.multi
    bare = lookup_word(lm, "king", leading_space=False)
    assert bare.form == "king" and bare.ids != king.ids
    hippo = lookup_word(lm, "hippopotamus")
    assert hippo.multi and "".join(hippo.pieces) == " hippopotamus"
    matrix = embedding_matrix(lm)
    assert np.allclose(word_vector(matrix, hippo.ids), matrix[list(hippo.ids)].mean(axis=0), atol=1e-6)
    assert lookup_word(lm, "   ").ids == ()


def test_pca_equals_a_numpy_svd_projection_up_to_sign(lm):
    matrix = embedding_matrix(lm)
    ids = [lookup_word(lm, w).ids[0] for w in ("cat", "dog", "horse", "red", "blue", "green", "one", "two")]
    points = matrix[ids].astype(np.float64)
    coords, explained = pca(points, 3)
    centred = points - points.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt[:3].T
    for axis in range(3):
        same = np.allclose(coords[:, axis], reference[:, axis], atol=1e-6)
        flipped = np.allclose(coords[:, axis], -reference[:, axis], atol=1e-6)
        assert same or flipped
    assert np.allclose(explained, s ** 2 / (s ** 2).sum())
    assert explained.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("method", ["pca", "tsne"])
@pytest.mark.parametrize("dims", [2, 3])
def test_projections_handle_few_points(n, method, dims):
    points = np.random.default_rng(n).normal(size=(n, 32))
    result = project(points, method, dims)
    assert result.coords.shape == (n, dims) and np.isfinite(result.coords).all()
    if method != "pca" and n < 5:
        assert result.method == "pca" and "at least 5" in result.note
    assert tsne_perplexity(n) < max(n, 2) and 2 <= umap_neighbors(max(n, 3)) < max(n, 3)


def test_umap_runs_reproducibly_on_few_points():
    points = np.random.default_rng(0).normal(size=(7, 32))
    first, second = project(points, "umap", 2, seed=3), project(points, "umap", 2, seed=3)
    assert first.method == "umap" and first.coords.shape == (7, 2)
    assert np.allclose(first.coords, second.coords)


def test_tsne_is_reproducible_with_a_seed():
    points = np.random.default_rng(1).normal(size=(30, 16))
    assert np.allclose(project(points, "tsne", 2, seed=5).coords, project(points, "tsne", 2, seed=5).coords)


def test_neighbours_include_the_word_itself_at_cosine_one(lm, unit):
    found = neighbours(lm, unit, "king", k=10)
    assert found.rows[0].text == " king" and found.rows[0].is_query
    assert found.rows[0].cosine == pytest.approx(1.0, abs=1e-5)
    matrix = embedding_matrix(lm).astype(np.float64)
    king = matrix[4197]
    for row in found.rows:    # each cosine is the plain formula over the raw rows
        other = matrix[row.id]
        assert row.cosine == pytest.approx(king @ other / np.linalg.norm(king) / np.linalg.norm(other), abs=1e-5)
    direct = matrix @ king / np.linalg.norm(matrix, axis=1) / np.linalg.norm(king)
    assert [r.id for r in found.rows] == list(np.argsort(-direct)[:10])
    without = neighbours(lm, unit, "king", k=10, exclude_query=True)
    assert 4197 not in [r.id for r in without.rows]
    assert [r.id for r in without.rows] == [r.id for r in found.rows[1:]] + [without.rows[-1].id]


def test_hiding_spelling_variants(lm, unit):
    found = neighbours(lm, unit, "king", k=10, hide_variants=True)
    texts = [r.text for r in found.rows]
    assert " King" not in texts and "King" not in texts and " king" in texts
    assert found.hidden_variants >= 2 and len(found.rows) == 10


def test_arithmetic_result_is_a_minus_b_plus_c(lm, unit):
    matrix = embedding_matrix(lm)
    a, b, c = (lookup_word(lm, w).ids for w in ("king", "man", "woman"))
    result = analogy(matrix, unit, a, b, c, k=10)
    direct = matrix[a[0]].astype(np.float64) - matrix[b[0]] + matrix[c[0]]
    assert np.allclose(result.vector, direct, atol=1e-6)
    cos = matrix.astype(np.float64) @ direct / np.linalg.norm(matrix, axis=1) / np.linalg.norm(direct)
    assert result.including[0][0] == int(np.argmax(cos))
    assert [i for i, _ in result.including] == list(np.argsort(-cos)[:10])
    assert not set(result.input_ids) & {i for i, _ in result.excluding}
    expected = [i for i in np.argsort(-cos) if i not in result.input_ids][:10]
    assert [i for i, _ in result.excluding] == expected


def test_solved_analogy_reports_ranks_honestly(lm, unit):
    queen = solve_analogy(lm, unit, "king", "man", "woman", "queen")
    assert queen.including[0].text == " queen" and queen.expected_rank_all == 1
    assert queen.including[1].text == " king" and queen.including[1].is_query   # the input comes second
    paris = solve_analogy(lm, unit, "Paris", "France", "Italy", "Rome")
    assert paris.including[0].text == " Paris" and paris.including[0].is_query
    rome = lookup_word(lm, "Rome").ids[0]
    assert paris.expected_rank_all == rank_of(cosine_scores(unit, word_vector(embedding_matrix(lm), (7042,))
                                                            - word_vector(embedding_matrix(lm), (4649,))
                                                            + word_vector(embedding_matrix(lm), (7158,))), rome)
    assert paris.expected_rank_all > 10 and paris.expected_rank_excluding == paris.expected_rank_all - 2
    assert solve_analogy(lm, unit, "king", "", "woman") is None


def test_top_k_and_rank_agree():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3], dtype=np.float32)
    assert top_k(scores, 3) == [(1, pytest.approx(0.9)), (3, pytest.approx(0.7)), (2, pytest.approx(0.5))]
    assert [i for i, _ in top_k(scores, 2, exclude=[1])] == [3, 2]
    assert rank_of(scores, 2) == 3 and rank_of(scores, 2, exclude=[1, 3]) == 1


def test_parse_groups_bounds_everything():
    parsed = parse_groups("animals: cat, dog, cat\n\ncolours: red; blue\nplain, words\n: ,,")
    assert [g.name for g in parsed.groups] == ["animals", "colours", "group 3"]
    assert parsed.groups[0].words == ("cat", "dog") and parsed.groups[2].words == ("plain", "words")
    assert any("repeated" in n for n in parsed.notes)
    many = parse_groups("\n".join(f"g{i}: " + ", ".join(f"w{i}_{j}" for j in range(50)) for i in range(10)))
    assert all(len(g.words) == MAX_WORDS_PER_GROUP for g in many.groups) and many.word_count == 150
    groups = parse_groups("\n".join(f"g{i}: a{i}, b{i}" for i in range(10)))
    assert len(groups.groups) == MAX_GROUPS and "3 more ignored" in groups.notes[0]
    assert parse_groups("").groups == () and parse_groups("   \n ").groups == ()


def test_group_cohesion_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 8))
    rows = group_cohesion(vectors, ["a", "a", "b", "b", "b"])
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert rows[0][0] == "a" and rows[0][1] == 2
    assert rows[0][2] == pytest.approx(unit[0] @ unit[1])
    assert rows[0][3] == pytest.approx(np.mean([unit[i] @ unit[j] for i in (0, 1) for j in (2, 3, 4)]))


def test_word_map_places_words_and_context(lm):
    view = map_words(lm, "a: king, queen, hippopotamus\nb: red, blue, green", method="pca", dims=3, background=50)
    words = view.points[view.points["kind"] == "word"]
    assert list(words["word"]) == ["king", "queen", "hippopotamus", "red", "blue", "green"]
    assert list(words["multi"]) == [False, False, True, False, False, False]
    context = view.points[view.points["kind"] == "context"]
    assert 45 <= len(context) <= 50 and set(context["ids"]).isdisjoint(set(words["ids"]))
    assert background_ids(lm, 3) == [lookup_word(lm, w).ids[0] for w in ("the", "in", "of")]
    assert {"x", "y", "z"} <= set(view.points.columns)


@pytest.mark.parametrize("text", ["", "one", "🍓🍓, 日本語, العربية", "<script>alert(1)</script>",
                                  "x" * 100_000, "a:\x00\x07, \x1b[0m"])
def test_word_map_never_raises(lm, text):
    view = map_words(lm, text, method="tsne", dims=2)
    assert len(view.points) == len(view.points[view.points["kind"] == "word"]) <= 150


def test_charts_show_user_text_as_text():
    import pandas as pd
    points = pd.DataFrame(dict(kind=["word", "word"], group=["<b>g</b>", "<b>g</b>"],
                               word=["<a href=x>y</a>", "z"], form=[" <a href=x>y</a>", " z"],
                               ids=["1 2", "3"], pieces=["'<'", "'z'"],
                               multi=[True, False], x=[0.0, 1.0], y=[1.0, 0.0]))
    fig = word_scatter(points, ["<b>g</b>"], 2, ["x", "y"], title="<i>t</i>")
    assert fig.data[0].text[0] == "&lt;a href=x&gt;y&lt;/a&gt;*" and fig.data[0].name == plain("<b>g</b>")
    assert fig.layout.title.text == "&lt;i&gt;t&lt;/i&gt;"
    bars = cosine_bars(["<b>"], [0.5], [7], ["other"], title="<b>x</b>")
    assert bars.data[0].y[0] == "&lt;b&gt;" and "<b>" not in bars.layout.title.text


def test_analogy_roles_and_description_follow_the_rankings(lm):
    from engine.inside.embeddings import embedding_matrix, lookup_word, normalize_rows, solve_analogy
    from ui.embeddings import describe_analogy

    solved = solve_analogy(lm, normalize_rows(embedding_matrix(lm)), "king", "man", "woman", "queen")
    queen = lookup_word(lm, "queen").ids
    assert len(queen) == 1 and solved.expected_id == queen[0]
    for row in solved.including:
        role = solved.role(row)
        assert (role == "input") == row.is_query
        assert (role == "expected") == (row.id == queen[0] and not row.is_query)
    assert solved.is_input_variant(" King") and not solved.is_input_variant(" queen")
    text = describe_analogy(solved, "king − man + woman", 49_152)
    rank = solved.expected_rank_all
    assert f"The expected **␣queen** ranks {rank}" in text
    top = solved.including[0]
    assert ("is **␣queen**, not one of the inputs" in text) == (not top.is_query)
    assert ("one of the inputs: the offset" in text) == top.is_query
