"""The KV-cache engine: the formula equals the real cache tensors, the cache never changes the tokens,
and the calculator gives the published models' figures."""
import json
import math

import pytest
import torch

from charts.kv_cache import attention_kinds, cache_growth, memory_vs_context, step_times
from engine.decoding.generation import generate
from engine.serving.kv_cache import (MAX_BATCH, MAX_HEAD_DIM, MAX_LAYERS, MAX_NEW_TOKENS, PUBLISHED, CacheComparison,
                             ModelSpec, TimedRun, cache_tensor_bytes, compare_generation, dtype_bytes, growth_points,
                             kv_bytes_per_token, kv_cache_bytes, live_element_size, live_spec,
                             llama_parameter_count, measure_cache_growth, weight_bytes)
from engine.tokens.offsets import token_ids

PROMPT = "The KV cache stores the keys and values of every earlier token, so that"


def published(name: str) -> ModelSpec:
    return next(s for s in PUBLISHED if s.name == name)


def test_smollm2_formula_is_46080_bytes_per_token_read_from_its_config(lm):
    spec = live_spec(lm)
    assert (spec.layers, spec.kv_heads, spec.head_dim, spec.heads) == (30, 3, 64, 9)
    assert live_element_size(lm) == 4  # float32 weights, so a float32 cache
    assert kv_bytes_per_token(spec, live_element_size(lm)) == 2 * 30 * 3 * 64 * 4 == 46_080


def test_formula_equals_the_real_cache_tensors_at_several_lengths(lm):
    ids = token_ids(lm, PROMPT)
    growth = measure_cache_growth(lm, ids, [1, 7, 40, 130])
    assert growth.tokens == [1, 7, 40, 130]
    assert growth.measured_bytes == [46_080 * t for t in (1, 7, 40, 130)]
    assert growth.formula_bytes == growth.measured_bytes and growth.matches
    assert growth.per_token_measured == growth.per_token_formula == 46_080
    assert growth.layers == 30 and growth.key_shape == (1, 3, 130, 64) and growth.dtype == "float32"


def test_measurement_matches_an_independent_dynamic_cache_prefill(lm):
    from transformers import DynamicCache

    ids = token_ids(lm, PROMPT)
    cache = DynamicCache(config=lm.model.config)
    with torch.inference_mode():
        lm.model(torch.tensor([ids]), past_key_values=cache, use_cache=True)
    by_hand = sum(layer.keys.numel() * layer.keys.element_size() + layer.values.numel() * layer.values.element_size()
                  for layer in cache.layers)
    assert cache_tensor_bytes(cache) == by_hand == 46_080 * len(ids)
    assert measure_cache_growth(lm, ids, [len(ids)]).measured_bytes == [by_hand]


def test_growth_points_double_and_end_at_the_maximum():
    assert growth_points(512) == [1, 16, 32, 64, 128, 256, 512]
    assert growth_points(100) == [1, 16, 32, 64, 100]
    assert growth_points("banana") == growth_points(512)
    assert growth_points(-3) == [1]


def test_cache_on_and_off_give_the_same_greedy_tokens_as_generate(lm):
    ids = token_ids(lm, PROMPT)
    result = compare_generation(lm, ids, 10)
    assert result.identical and result.first_difference is None
    assert result.cached.new_ids == result.uncached.new_ids
    assert result.cached.new_ids == generate(lm, PROMPT, 10, stop_at_eos=False).new_ids
    assert result.cached.new_ids == generate(lm, PROMPT, 10, use_cache=False, stop_at_eos=False).new_ids
    p = len(ids)
    assert result.cached.tokens_fed == [p] + [1] * 9           # the prompt once, then one token per step
    assert result.uncached.tokens_fed == list(range(p, p + 10))  # the whole sequence every step
    assert result.cached.cache_bytes == [46_080 * (p + i) for i in range(10)]
    assert result.uncached.cache_bytes == [0] * 10
    assert len(result.cached.step_seconds) == len(result.uncached.step_seconds) == 10
    assert result.new_text and result.measured_at > 0


def test_compare_generation_rejects_empty_and_bounds_lengths(lm):
    with pytest.raises(ValueError):
        compare_generation(lm, [], 5)
    ids = token_ids(lm, "Hi")
    assert len(compare_generation(lm, ids, -4).cached.new_ids) == 1
    assert MAX_NEW_TOKENS == 256


def _run(seconds, use_cache=True):
    return TimedRun(use_cache, [1] * len(seconds), list(seconds), [1] * len(seconds), [0] * len(seconds))


def test_speedup_and_noise_are_computed_from_the_steps():
    comparison = CacheComparison([1, 2], _run([0.5, 0.1, 0.1, 0.1]), _run([0.5, 0.3, 0.5, 0.7], False), "", 0.0)
    assert comparison.speedup == pytest.approx(2.0 / 0.8)
    assert comparison.cumulative_speedup() == pytest.approx([1.0, 0.8 / 0.6, 1.3 / 0.7, 2.0 / 0.8])
    assert not comparison.noisy
    spiky = CacheComparison([1], _run([0.5] + [0.1] * 20 + [1.0, 1.2]), _run([0.5] * 23, False), "", 0.0)
    assert spiky.noisy
    differ = CacheComparison([1], TimedRun(True, [1, 2, 3], [1, 1, 1], [1, 1, 1], [0] * 3),
                             TimedRun(False, [1, 5, 3], [1, 1, 1], [1, 1, 1], [0] * 3), "", 0.0)
    assert not differ.identical and differ.first_difference == 1


def test_calculator_gives_the_published_per_token_figures():
    assert kv_bytes_per_token(published("LLaMA-2-7B"), dtype_bytes("fp16")) == 524_288
    assert kv_bytes_per_token(published("LLaMA-2-70B"), dtype_bytes("fp16")) == 327_680
    assert kv_bytes_per_token(published("LLaMA-3-8B"), dtype_bytes("bf16")) == 131_072
    assert kv_bytes_per_token(published("Mistral-7B"), dtype_bytes("int4")) == 32_768
    assert kv_cache_bytes(published("LLaMA-2-7B"), 2, 4096, 1) == 2 ** 31  # the often-quoted 2 GiB at 4k
    assert kv_cache_bytes(published("LLaMA-2-7B"), 2, 4096, 8) == 8 * 2 ** 31
    assert [dtype_bytes(d) for d in ("fp32", "fp16", "bf16", "fp8", "int8", "int4")] == [4, 2, 2, 1, 1, 0.5]


def test_parameter_counts_from_config_match_the_model(lm):
    config = lm.model.config
    counted = llama_parameter_count(config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                                    config.num_key_value_heads, 64, config.intermediate_size, config.vocab_size,
                                    config.tie_word_embeddings)
    assert counted == lm.card.parameters == sum(p.numel() for p in lm.model.parameters())
    assert published("LLaMA-2-7B").parameter_count == 6_738_415_616   # the count Meta reports for Llama-2-7b
    assert 68.9e9 < published("LLaMA-2-70B").parameter_count < 69.1e9
    assert 8.0e9 < published("LLaMA-3-8B").parameter_count < 8.1e9
    assert 7.2e9 < published("Mistral-7B").parameter_count < 7.3e9
    assert weight_bytes(published("LLaMA-2-7B"), 2) == 2 * 6_738_415_616
    assert weight_bytes(ModelSpec("x", 2, 2, 2, 2), 2) is None


def test_gqa_divides_the_cache_by_the_group_size():
    big = published("LLaMA-2-70B")
    mha, mqa = big.with_kv_heads(big.heads), big.with_kv_heads(1)
    assert (mha.attention, big.attention, mqa.attention) == ("MHA", "GQA", "MQA")
    assert kv_bytes_per_token(mha, 2) == 8 * kv_bytes_per_token(big, 2) == 64 * kv_bytes_per_token(mqa, 2)


@pytest.mark.parametrize("raw", [
    dict(layers=-5, heads=0, kv_heads=-1, head_dim=-64),
    dict(layers=10 ** 12, heads=10 ** 12, kv_heads=10 ** 12, head_dim=10 ** 12),
    dict(layers="banana", heads=None, kv_heads=float("nan"), head_dim=float("inf")),
    dict(layers="<script>", heads="1e400", kv_heads=[3], head_dim="64; DROP TABLE"),
])
def test_hostile_configs_are_clamped_never_raise(raw):
    spec = ModelSpec("hostile", **raw).bounded()
    assert 1 <= spec.layers <= MAX_LAYERS and 1 <= spec.kv_heads <= spec.heads and 1 <= spec.head_dim <= MAX_HEAD_DIM
    for batch in (10 ** 12, -3, "x", float("nan")):
        value = kv_cache_bytes(spec, dtype_bytes("<b>fp16</b>"), 10 ** 15, batch)
        assert math.isfinite(value) and value >= 0
    assert kv_cache_bytes(spec, 2, 1000, 10 ** 12) == kv_cache_bytes(spec, 2, 1000, MAX_BATCH)


def test_charts_carry_the_numbers_they_are_given():
    fig = step_times([10.0, 11.0], [10.0, 30.0], [5, 6], [1.0, 40 / 21])
    data = json.loads(fig.to_json())["data"]
    assert data[0]["y"] == [10.0, 30.0] and data[1]["y"] == [10.0, 11.0] and data[2]["y"] == [1.0, 40 / 21]
    growth = json.loads(cache_growth([1, 2], [0.04608, 0.09216], [0.04608, 0.09216]).to_json())["data"]
    assert growth[1]["y"] == [0.04608, 0.09216]
    fig = memory_vs_context([{"name": "m", "contexts": [1024, 2048, 4096], "gb": [1, 2, 4], "trained_context": 2048}],
                            2048)
    traces = json.loads(fig.to_json())["data"]
    assert traces[0]["x"] == [1024, 2048] and traces[1]["x"] == [2048, 4096]  # solid, then dotted beyond
    bars = json.loads(attention_kinds(["m"], [4.0], [1.0], [0.5], ["GQA"]).to_json())["data"]
    assert [b["y"][0] for b in bars] == [100.0, 25.0, 12.5]


def test_a_spent_time_budget_stops_both_runs_together(lm):
    ids = token_ids(lm, "Short")
    result = compare_generation(lm, ids, 50, time_budget_s=0.0)
    assert len(result.cached.new_ids) == len(result.uncached.new_ids) == 4  # the minimum that still shows a trend
    assert result.stopped_early and result.requested == 50 and result.identical
    assert not compare_generation(lm, ids, 5).stopped_early


def test_spikes_in_the_uncached_run_also_count_as_noise():
    smooth = [0.1 + 0.01 * i for i in range(20)]
    spiky = list(smooth)
    spiky[5], spiky[12] = 1.5, 2.0
    calm = CacheComparison([1], _run([0.1] * 20), _run(smooth, False), "", 0.0)
    assert not calm.noisy
    assert CacheComparison([1], _run([0.1] * 20), _run(spiky, False), "", 0.0).noisy


def test_calculator_rows_hold_the_formula_for_every_configuration():
    from engine.serving.kv_cache import GB, ModelSpec, calculator_rows

    rows = calculator_rows(list(PUBLISHED), 2.0, 4096, 3)
    assert [r["model"] for r in rows] == [s.name for s in PUBLISHED]
    for spec, row in zip(PUBLISHED, rows):
        assert row["bytes_per_token"] == 2 * spec.layers * spec.kv_heads * spec.head_dim * 2
        assert row["kv_cache_gb"] == pytest.approx(row["bytes_per_token"] * 4096 * 3 / GB)
    partial = calculator_rows([ModelSpec("x", layers=2, heads=4, kv_heads=1, head_dim=8)], 1.0, 10, 1)
    assert partial[0]["weights_gb"] == "—" and partial[0]["attention"].startswith("MQA")
