"""Tiled online-softmax attention equals naive attention, its running state behaves as the algorithm says,
and the cost sweep measures what it claims."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.inside.flash_attention import (BLOCK_SIZES, head_vectors, max_abs_difference, measure_costs, naive_attention,
                                    sweep_lengths, tiled_attention)


def random_head(length: int, dim: int = 64, seed: int = 0, spread: float = 1.0):
    rng = np.random.default_rng(seed)
    return tuple(spread * rng.standard_normal((length, dim), dtype=np.float32) for _ in range(3))


def test_naive_attention_is_torchs_causal_attention():
    q, k, v = random_head(50)
    expected = F.scaled_dot_product_attention(*(torch.from_numpy(a)[None, None] for a in (q, k, v)),
                                              is_causal=True)[0, 0].numpy()
    assert max_abs_difference(naive_attention(q, k, v), expected) < 1e-5
    # Without the mask, the first row sees every key.
    assert max_abs_difference(naive_attention(q, k, v, causal=False)[-1], naive_attention(q, k, v)[-1]) < 1e-6
    assert max_abs_difference(naive_attention(q, k, v, causal=False)[0], naive_attention(q, k, v)[0]) > 1e-3


@pytest.mark.parametrize("length", [1, 2, 15, 16, 17, 63, 100, 130])
@pytest.mark.parametrize("block_q, block_k", [(16, 16), (32, 32), (64, 64), (128, 128), (16, 64), (64, 16), (7, 5)])
def test_tiled_equals_naive_for_any_blocks_and_lengths(length, block_q, block_k):
    q, k, v = random_head(length, seed=length)
    for causal in (True, False):
        tiled = tiled_attention(q, k, v, block_q, block_k, causal=causal)
        assert max_abs_difference(tiled.output, naive_attention(q, k, v, causal=causal)) < 1e-5


def test_large_scores_do_not_overflow_thanks_to_the_running_max():
    q, k, v = random_head(80, spread=6.0)      # scores in the hundreds: exp() alone would overflow float32
    with np.errstate(over="raise"):
        tiled = tiled_attention(q, k, v, 16, 16)
    naive = naive_attention(q, k, v)
    assert np.all(np.isfinite(tiled.output))
    assert max_abs_difference(tiled.output, naive) < 1e-4 * np.abs(naive).max()


def test_final_running_max_and_sum_are_the_softmax_normaliser():
    q, k, v = random_head(40)
    tiled = tiled_attention(q, k, v, 16, 8)
    scores = (q.astype(np.float64) @ k.T.astype(np.float64)) / 8.0
    scores[np.triu_indices(40, 1)] = -np.inf
    np.testing.assert_allclose(tiled.row_max, scores.max(1), rtol=1e-5)
    log_denominator = np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1)) + scores.max(1)
    np.testing.assert_allclose(np.log(tiled.row_sum) + tiled.row_max, log_denominator, rtol=1e-5)


def test_watched_steps_follow_the_online_softmax():
    q, k, v = random_head(64)
    tiled = tiled_attention(q, k, v, 16, 16, watch=2)        # query rows 32..47 see key blocks 0, 1, 2
    assert [s.key_block for s in tiled.steps] == [0, 1, 2]
    first = tiled.steps[0]
    assert np.all(first.rescale == 0)                          # nothing accumulated before the first tile
    for before, after in zip(tiled.steps, tiled.steps[1:]):
        assert np.all(after.running_max >= before.running_max)  # the maximum never falls
        np.testing.assert_allclose(after.rescale, np.exp(before.running_max - after.running_max), rtol=1e-6)
        assert np.all((after.rescale > 0) & (after.rescale <= 1))
    np.testing.assert_allclose(tiled.steps[-1].output, tiled.output[32:48], atol=1e-7)
    # After the first tile, each row's output is attention over the keys seen so far only.
    partial = naive_attention(q[32:48], k[:16], v[:16], causal=False)
    assert max_abs_difference(first.output, partial) < 1e-5


def test_causal_tiles_above_the_diagonal_are_skipped():
    q, k, v = random_head(64)
    tiled = tiled_attention(q, k, v, 16, 16)
    assert tiled.tiles_computed == 10 and tiled.tiles_skipped == 6   # 4 x 4 tiles: 10 on or below the diagonal
    full = tiled_attention(q, k, v, 16, 16, causal=False)
    assert full.tiles_computed == 16 and full.tiles_skipped == 0
    assert tiled.largest_tile_bytes == 16 * 16 * 4


def test_head_vectors_follow_grouped_query_attention():
    q_rot = np.arange(9 * 4 * 2, dtype=np.float32).reshape(9, 4, 2)
    k_rot = -np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    v = k_rot * 10
    for head in range(9):
        q, k, vv = head_vectors(q_rot, k_rot, v, head)
        assert np.array_equal(q, q_rot[head]) and np.array_equal(k, k_rot[head // 3]) and np.array_equal(vv, v[head // 3])


def test_bad_shapes_are_refused():
    q, k, v = random_head(8)
    with pytest.raises(ValueError):
        tiled_attention(q, k[:4], v[:4])
    with pytest.raises(ValueError):
        naive_attention(q[:0], k[:0], v[:0])
    with pytest.raises(ValueError):
        tiled_attention(q, k, v, 0, 16)


def test_sweep_lengths_double_and_respect_the_cap():
    assert sweep_lengths(2048, 4096) == [256, 512, 1024, 2048]
    assert sweep_lengths(16384, 4096) == [256, 512, 1024, 2048, 4096]
    assert sweep_lengths(10, 4096) == [256]


def test_measured_costs_show_quadratic_and_linear_memory():
    seen = []
    sweep = measure_costs([256, 512, 1024], block=32, repeats=1, on_point=lambda i, n, p: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and not sweep.stopped_early
    naive = [p.naive_peak_bytes for p in sweep.points]
    tiled = [p.tiled_peak_bytes for p in sweep.points]
    # Naive attention holds at least the T x T float32 scores; each doubling of T about quadruples it.
    assert all(n >= p.score_matrix_bytes for n, p in zip(naive, sweep.points))
    assert naive[2] / naive[1] > 3.0
    # The tiles' memory grows with T only through the [T, d] output: far below the score matrix.
    assert all(t < p.score_matrix_bytes / 2 for t, p in zip(tiled[1:], sweep.points[1:]))
    assert tiled[2] / tiled[1] < 2.5
    assert all(p.max_difference < 1e-5 for p in sweep.points)
    assert all(p.naive_seconds > 0 and p.tiled_seconds > 0 and p.fused_seconds > 0 for p in sweep.points)


def test_a_stop_request_ends_the_sweep_early():
    calls = []
    sweep = measure_costs([256, 512, 1024], block=64, repeats=1, should_stop=lambda: len(calls) >= 1,
                          on_point=lambda i, n, p: calls.append(i))
    assert len(sweep.points) == 1 and sweep.stopped_early
    assert math.isfinite(sweep.points[0].naive_seconds)


@pytest.mark.parametrize("block", BLOCK_SIZES)
def test_real_head_of_the_model_tiles_exactly(lm, block):
    from engine.tokens.offsets import token_ids
    from engine.model.traced import trace

    ids = token_ids(lm, "FlashAttention computes exact attention without ever storing the full score matrix, "
                        "which is why long sequences fit in GPU memory.")
    tp = trace(lm, ids, record={"q_rot", "k_rot", "v", "head_out"}, layers=[11])
    q, k, v = head_vectors(tp.at("q_rot", 11), tp.at("k_rot", 11), tp.at("v", 11), 4)
    tiled = tiled_attention(q, k, v, block, block)
    assert max_abs_difference(tiled.output, naive_attention(q, k, v)) < 1e-5
    assert max_abs_difference(tiled.output, tp.at("head_out", 11)[4]) < 1e-5   # the model's own head output


def test_the_fused_backend_is_read_from_torch():
    sweep = measure_costs([256], block=64, repeats=1)
    assert sweep.fused_backend == "FLASH_ATTENTION"   # torch 2.13 on CPU: a tiled C++ kernel
