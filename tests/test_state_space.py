"""The selective scan equals its convolution form when nothing is selective, and its unrolled form always; the
retention weights and the measured step costs behave as the page says."""
import numpy as np
import pytest

from engine.inside.state_space import (attention_step, convolution_form, convolution_kernel, measure_step_costs,
                                mixing_matrix, retention, scan_step, selective_deltas, selective_scan,
                                step_lengths, unrolled_form)


def layer(T=40, D=5, N=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, D))
    A = -rng.uniform(0.2, 2.0, (D, N))
    return rng, x, A


def test_non_selective_scan_equals_its_convolution_form():
    rng, x, A = layer()
    delta = rng.uniform(0.05, 0.8, 5)                  # one step size per channel, the same at every step
    B, C = rng.standard_normal(4), rng.standard_normal(4)
    scan = selective_scan(x, np.tile(delta, (40, 1)), A, B, C)
    np.testing.assert_allclose(scan.y, convolution_form(x, delta, A, B, C), atol=1e-12)


def test_the_kernel_of_a_single_state_is_a_geometric_decay():
    K = convolution_kernel(6, np.array([0.5]), np.array([[-1.0]]), np.array([2.0]), np.array([3.0]))
    np.testing.assert_allclose(K[:, 0], 3 * 2 * 0.5 * np.exp(-0.5 * np.arange(6)))


def test_selective_scan_equals_its_unrolled_matrix_form():
    rng, x, A = layer(T=30)
    delta = rng.uniform(0.01, 1.5, (30, 5))            # every step its own delta, B and C: selective
    B, C = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    scan = selective_scan(x, delta, A, B, C)
    np.testing.assert_allclose(scan.y, unrolled_form(x, delta, A, B, C), atol=1e-10)
    M = mixing_matrix(delta[:, 2], A[2], B, C)
    assert np.all(np.triu(M, 1) == 0)                  # causal: no token reads a later one
    np.testing.assert_allclose(M @ x[:, 2], scan.y[:, 2], atol=1e-10)


def test_the_state_has_the_same_size_at_every_length():
    rng, x, A = layer(T=200)
    short = selective_scan(x[:10], 0.3, A, 1.0, 1.0).state
    long = selective_scan(x, 0.3, A, 1.0, 1.0).state
    assert short.shape == long.shape == (5, 4)


def test_retention_forgets_faster_after_large_steps():
    delta = np.array([1.0, 0.01, 0.01, 2.0, 0.01])
    W = retention(delta, 1.0)
    np.testing.assert_allclose(W[0, 0], 1.0)                         # written with weight delta_0
    np.testing.assert_allclose(W[2, 0], np.exp(-0.02))              # small steps barely shrink it
    np.testing.assert_allclose(W[3, 0], np.exp(-2.02))              # a large step wipes most of it
    assert W[4, 3] > W[4, 0]                                          # the large-step token now dominates
    assert np.all(np.triu(W, 1) == 0)


def test_selective_deltas():
    surprise = np.array([1.0, 2.0, 8.0, 1.5])
    flat = selective_deltas(surprise, 0.0, base=0.5)
    np.testing.assert_allclose(flat, 0.5)                            # no selection: one step size
    sharp = selective_deltas(surprise, 2.0, base=0.5)
    assert np.argmax(sharp) == 2 and np.all(sharp > 0)                # the surprising token is written hardest
    np.testing.assert_allclose(selective_deltas(np.ones(3), 3.0), 0.5)


def test_bad_parameters_are_refused():
    _, x, A = layer(T=4)
    with pytest.raises(ValueError):
        selective_scan(x, 0.1, -A, 1.0, 1.0)
    with pytest.raises(ValueError):
        selective_scan(x, -0.1, A, 1.0, 1.0)


def test_decode_steps_agree_with_full_computations():
    rng = np.random.default_rng(1)
    q, keys, values = rng.standard_normal((9, 8)), rng.standard_normal((3, 20, 8)), rng.standard_normal((3, 20, 8))
    out = attention_step(q, keys, values)
    for head in range(9):
        k, v = keys[head // 3], values[head // 3]
        w = np.exp(q[head] @ k.T / np.sqrt(8))
        np.testing.assert_allclose(out[head], (w / w.sum()) @ v, rtol=1e-6)
    _, x, A = layer(T=6)
    h = np.zeros((5, 4))
    ys = []
    for t in range(6):
        h, y = scan_step(h, x[t], np.full(5, 0.3), A, np.ones(4), np.ones(4))
        ys.append(y)
    np.testing.assert_allclose(ys, selective_scan(x, 0.3, A, 1.0, 1.0).y, atol=1e-12)


def test_step_costs_are_measured_and_only_the_cache_grows():
    assert step_lengths(16384, 16384) == [256, 1024, 4096, 16384]
    assert step_lengths(131072, 16384) == [256, 1024, 4096, 16384]
    assert step_lengths(2000, 16384) == [256, 1024, 2000]
    costs = measure_step_costs([256, 4096], heads=9, kv_heads=3, head_dim=64, channels=1152, states=16, repeats=2)
    small, large = costs.points
    assert large.kv_bytes == 16 * small.kv_bytes == 2 * 3 * 4096 * 64 * 4
    assert small.state_bytes == large.state_bytes == 1152 * 16 * 4
    assert all(p.attention_ms > 0 and p.scan_ms > 0 for p in costs.points)
