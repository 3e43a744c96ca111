"""The context measurements time real passes, weigh the real cache, and score exactly the tokens they say."""
import numpy as np
import pytest

from engine.serving.kv_cache import kv_cache_bytes, live_element_size, live_spec
from engine.inside.long_context import (context_curve, context_sizes, cost_lengths, filler_ids, measure_context_costs,
                                 position_shift_check)
from engine.model.perplexity import scores_from_logits
from engine.tokens.offsets import token_ids
from engine.model.traced import trace

TEXT = ("Ada keeps bees on the roof of the old library. Every Friday she brings a jar of honey to the reading room "
        "and leaves it by the window. The librarian, Tomas, pretends not to notice. On Friday the jar was by the "
        "window again, and Tomas smiled at Ada's honey.")


def test_lengths_double_up_to_the_cap():
    assert cost_lengths(1024, 2048) == [128, 256, 512, 1024]
    assert cost_lengths(16384, 2048) == [128, 256, 512, 1024, 2048]
    assert cost_lengths(1, 2048) == [128]
    assert context_sizes(100) == [1, 4, 16, 64, 100]
    assert context_sizes(70) == [1, 4, 16, 70]      # 64 would sit on top of 70
    assert context_sizes(64) == [1, 4, 16, 64]
    assert context_sizes(1) == [1]


def test_costs_are_measured_and_the_cache_matches_its_formula(lm):
    seen = []
    costs = measure_context_costs(lm, [16, 48], decode_steps=2, on_point=lambda i, n, p: seen.append(i))
    assert seen == [1, 2] and not costs.stopped_early
    assert costs.context_length == lm.model.config.max_position_embeddings == 8192
    spec, element = live_spec(lm), live_element_size(lm)
    for point in costs.points:
        assert point.kv_bytes == point.kv_formula_bytes == kv_cache_bytes(spec, element, point.length)
        assert point.prefill_seconds > 0 and len(point.decode_ms_each) == 2 and point.decode_ms > 0
    assert costs.points[1].kv_bytes == 3 * costs.points[0].kv_bytes
    assert len(filler_ids(lm, 300)) == 300


def test_a_stop_request_ends_the_cost_sweep(lm):
    costs = measure_context_costs(lm, [16, 32, 64], decode_steps=1, should_stop=lambda: True)
    assert [p.length for p in costs.points] == [16] and costs.stopped_early   # the first length always runs


def test_context_curve_scores_the_last_tokens_given_c_earlier_ones(lm):
    ids = token_ids(lm, TEXT)
    curve = context_curve(lm, ids, 12)
    assert curve.contexts == tuple(context_sizes(len(ids) - 12)) and curve.total_tokens == len(ids)
    for c, nll in zip(curve.contexts, curve.token_nll):
        window = ids[len(ids) - 12 - c:]
        expected, _ = scores_from_logits(window, trace(lm, window).logits)
        np.testing.assert_allclose(nll, expected[-12:], rtol=1e-5)
        assert len(nll) == 12
    np.testing.assert_allclose(curve.perplexities, np.exp(curve.mean_nll), rtol=1e-6)
    assert curve.full < curve.least   # the earlier story helps: "Ada's honey", "Tomas"
    with pytest.raises(ValueError):
        context_curve(lm, ids[:5], 12)


def test_shifting_every_position_keeps_the_perplexity(lm):
    ids = token_ids(lm, TEXT)
    check = position_shift_check(lm, ids, (0, 8192, 65536))
    base = check.perplexities[0]
    assert all(abs(p - base) / base < 1e-3 for p in check.perplexities)


def test_the_needle_sits_where_the_case_says_and_the_answer_ends_the_prompt(lm):
    from engine.inside.long_context import needle_case
    from engine.tokens.offsets import decode

    for depth in (0.0, 0.5, 1.0):
        ids, (start, stop), answer_start = needle_case(lm, 128, depth, "4719")
        assert "secret code for the blue door is 4719" in decode(lm, ids[start:stop])
        assert decode(lm, ids[answer_start:]) == " 4719."
        assert decode(lm, ids[:answer_start]).endswith("The secret code for the blue door is")
    assert needle_case(lm, 128, 0.0, "x")[1][0] == 0 and needle_case(lm, 128, 1.0, "x")[1][0] > 100


def test_needle_cell_reads_the_models_own_attention(lm):
    from engine.inside.long_context import needle_case, needle_cell, needle_grid

    cell = needle_cell(lm, 128, 0.5, "4719")
    ids, span, answer_start = needle_case(lm, 128, 0.5, "4719")
    assert cell.ids == tuple(ids) and cell.needle == span and cell.answer_start == answer_start
    assert cell.attention.shape == (answer_start,) and abs(float(cell.attention.sum()) - 1) < 1e-4
    step = answer_start - 1
    for layer in (2, 17):   # the answer step's attention, as the explicit path of the traced forward forms it
        probs = trace(lm, ids, record={"probs"}, layers=[layer]).at("probs", layer)[:, step]
        assert cell.needle_share_by_layer[layer] == pytest.approx(float(probs[:, span[0]:span[1]].sum(-1).mean()),
                                                                  abs=1e-5)
    nll, top1 = scores_from_logits(ids, trace(lm, ids).logits)
    assert cell.answer_probability == pytest.approx(float(np.exp(-nll[answer_start - 1:].sum())), rel=1e-4)
    assert cell.found == bool(top1[answer_start - 1:].all())
    grid = needle_grid(lm, [128], [0.0, 1.0], "4719", should_stop=lambda: True)
    assert len(grid.cells) == 1 and grid.cell(128, 0.0) is not None and grid.cell(128, 1.0) is None
