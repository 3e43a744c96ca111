"""NF4 as QLoRA defines it, checked against bitsandbytes' table; block quantizers; double quantization's bits;
fine-tuning memory formulas against the live model's real parameter count."""
import numpy as np
import pytest
import torch

from engine.serving.compression import linear_weight
from engine.training.qlora import (BYTES_PER_TRAINED_PARAM, LINEAR_TARGETS, LLAMA_1, BlockQuantizer,
                                   absmax_constants, block_linear_names, double_quantize, finetune_memory,
                                   matrix_errors, nearest_level, nf4_levels, quantize_nf4, quantize_uniform,
                                   shape_of, storage_bits, uniform_levels)

# bitsandbytes' NF4 table (csrc kernels; also `get_4bit_type("nf4")` in bitsandbytes/functional.py), as
# reproduced verbatim by torchao, tinygrad and others.
BITSANDBYTES_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                    0.7229568362236023, 1.0]


def test_nf4_levels_are_the_standard_sixteen():
    levels = nf4_levels()
    assert levels.shape == (16,)
    np.testing.assert_allclose(levels, BITSANDBYTES_NF4, atol=1e-6)
    assert (levels > 0).sum() == 8 and (levels < 0).sum() == 7 and (levels == 0).sum() == 1
    assert levels[0] == -1 and levels[-1] == 1 and np.all(np.diff(levels) > 0)


def test_uniform_int4_has_fifteen_symmetric_levels():
    levels = uniform_levels(4)
    assert len(levels) == 15 and levels[7] == 0
    np.testing.assert_allclose(levels, -levels[::-1])
    np.testing.assert_allclose(np.diff(levels), 1 / 7)


def test_nearest_level_matches_bucketize_exactly_even_on_midpoints():
    levels = nf4_levels()
    grid = torch.tensor(levels, dtype=torch.float32)
    midpoints = (grid[1:] + grid[:-1]) / 2
    x = torch.cat([torch.rand(200_000) * 2 - 1, midpoints, torch.nextafter(midpoints, torch.tensor(2.0)),
                   torch.nextafter(midpoints, torch.tensor(-2.0)), torch.tensor([-1.0, 0.0, 1.0])])
    assert torch.equal(nearest_level(x, levels), grid[torch.bucketize(x, midpoints)])


def test_nf4_round_trip_lands_on_levels_times_block_constants_and_leaves_the_input():
    weight = torch.randn(96, 64, generator=torch.Generator().manual_seed(0)) * 0.02
    before = weight.clone()
    restored = quantize_nf4(weight, 64)
    assert torch.equal(weight, before)
    constants = absmax_constants(weight, 64)
    codes = (restored.reshape(-1, 64) / constants[:, None]).reshape(-1)
    assert torch.all(torch.isin(torch.round(codes * 1e5), torch.round(torch.tensor(nf4_levels()) * 1e5).float()))
    assert torch.allclose(restored.reshape(-1, 64).abs().amax(1), constants)   # each block's max is exact


def test_nf4_beats_int4_on_normal_weights_and_loses_on_uniform_ones():
    g = torch.Generator().manual_seed(1)
    normal = torch.randn(256, 256, generator=g)
    flat = torch.rand(256, 256, generator=g) * 2 - 1
    mse = lambda w, q: float((w - q).pow(2).mean())
    assert mse(normal, quantize_nf4(normal, 64)) < 0.8 * mse(normal, quantize_uniform(normal, 4, 64))
    assert mse(flat, quantize_uniform(flat, 4, 64)) < mse(flat, quantize_nf4(flat, 64))


def test_double_quantization_bits_match_the_paper_layout():
    n = 64 * 256 * 1000
    bits = storage_bits(n, 64)
    assert bits.plain == pytest.approx(4.5)
    assert bits.double == pytest.approx(4 + 8 / 64 + 32 / (64 * 256) + 32 / n)     # + the constants' mean
    assert bits.saved == pytest.approx(0.373, abs=5e-4)
    constants = torch.rand(5184, generator=torch.Generator().manual_seed(2)) * 0.1 + 0.05
    stored = double_quantize(constants)
    assert stored.shape == constants.shape
    assert float(((stored - constants).abs() / constants).max()) < 0.01


def test_errors_order_on_a_real_matrix(lm):
    weight = linear_weight(lm, "layers.3.mlp.up_proj")
    errors = matrix_errors(weight, 64)
    assert errors["INT8"].mse < errors["NF4"].mse < errors["INT4"].mse
    assert errors["NF4"].mse <= errors["NF4 + double quant."].mse < 1.05 * errors["NF4"].mse
    direct = float((quantize_nf4(weight, 64) - weight).pow(2).mean())
    assert errors["NF4"].mse == pytest.approx(direct)


def test_block_quantizer_touches_block_linears_only(lm):
    embedding = lm.model.model.embed_tokens.weight
    quantizer = BlockQuantizer("nf4", 64, True)
    assert quantizer("lm_head", embedding) is embedding
    weight = linear_weight(lm, "layers.0.self_attn.k_proj")
    assert not torch.equal(quantizer("layers.0.self_attn.k_proj", weight), weight)
    assert len(block_linear_names(lm.card.layers)) == 210


def test_shape_formula_reproduces_the_loaded_parameter_count(lm):
    shape = shape_of(lm.model)
    assert shape.parameters == sum(p.numel() for p in lm.model.parameters())
    linear = sum(p.numel() for n, p in lm.model.model.layers.named_parameters() if p.dim() == 2)
    assert shape.linear_params == linear
    assert LLAMA_1[-1].parameters == pytest.approx(65.2e9, rel=0.01)     # "65B"
    assert LLAMA_1[0].parameters == pytest.approx(6.7e9, rel=0.01)       # "7B"


def test_finetune_memory_formulas(lm):
    shape = shape_of(lm.model)
    memory = finetune_memory(shape, 8, ("q_proj", "v_proj"))
    assert memory.adapter_params == 30 * 8 * ((576 + 576) + (576 + 192))
    assert memory.full == BYTES_PER_TRAINED_PARAM * shape.parameters
    assert memory.lora == 2 * shape.parameters + 16 * memory.adapter_params
    big = finetune_memory(LLAMA_1[-1], 16, LINEAR_TARGETS)
    assert big.qlora < 48e9 < big.lora < big.full        # the paper's single 48 GB GPU, before activations
