"""engine.serving.compression: fake quantization and pruning do what they say, and their damage is measured honestly."""
import numpy as np
import pytest
import torch

from engine.serving.compression import (Quantizer, bits_per_weight, damage, input_norms, make_pruner, prune_mask, quantize)
from engine.tokens.offsets import token_ids

TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
        "movable metal type with an oil-based ink and a wooden press. Books became cheaper, and ideas spread faster. "
        "Within fifty years, presses were working in more than two hundred cities across Europe, and millions of "
        "books had been printed. Scholars could compare the same text in different places, errors could be "
        "corrected in the next edition, and news travelled in pamphlets that anyone could buy for a few coins. "
        "Many historians see the press as one of the causes of the Reformation and of the scientific revolution.")


def test_quantization_levels_and_error_shrink_with_bits():
    w = torch.randn(8, 128, generator=torch.Generator().manual_seed(0))
    for granularity in ("tensor", "channel", "group"):
        q4 = quantize(w, 4, granularity, "absmax", 32)
        rows = q4.reshape(-1, 32) if granularity == "group" else q4 if granularity == "channel" else q4.reshape(1, -1)
        assert all(len(torch.unique(r)) <= 15 for r in rows)     # 2^4 - 1 symmetric levels per scale
    assert len(torch.unique(quantize(w, 3, "tensor", "zeropoint"))) <= 8
    errors = [float((quantize(w, b, "channel") - w).abs().mean()) for b in (2, 4, 8)]
    assert errors[0] > errors[1] > errors[2]
    assert float((quantize(w, 4, "group", group_size=16) - w).abs().mean()) < errors[1]   # finer scales help
    shifted = w + 3.0                                                  # not centred on zero: zero-point wins
    assert (quantize(shifted, 4, "channel", "zeropoint") - shifted).abs().mean() < \
        (quantize(shifted, 4, "channel", "absmax") - shifted).abs().mean()
    assert bits_per_weight(4, "group", "absmax", 32) == 4.5


def test_prune_masks():
    importance = torch.tensor([[4.0, 1.0, 3.0, 2.0, 8.0, 7.0, 5.0, 6.0]])
    assert prune_mask(importance, 0.5).tolist() == [[False, False, False, False, True, True, True, True]]
    assert prune_mask(importance, 0.0, "2:4").tolist() == [[True, False, True, False, True, True, False, False]]


def test_the_model_pays_for_compression_in_proportion(lm):
    ids = token_ids(lm, TEXT)
    eight, two = damage(lm, ids, Quantizer(8)), damage(lm, ids, Quantizer(2))
    assert eight.perplexity == pytest.approx(eight.base_perplexity, rel=0.02)
    assert two.perplexity > 2 * eight.perplexity and two.mean_kl > eight.mean_kl
    assert eight.top1_agreement > 0.9 > two.top1_agreement
    none = damage(lm, ids, make_pruner(lm, 0.0, "magnitude", "unstructured", ()))
    assert none.perplexity == none.base_perplexity and none.mean_kl == 0.0 and none.top1_agreement == 1.0
    light, heavy = (damage(lm, ids, make_pruner(lm, s, "magnitude", "unstructured", ())) for s in (0.1, 0.7))
    assert heavy.perplexity > 2 * light.perplexity


def test_wanda_uses_the_inputs_norms(lm):
    ids = tuple(token_ids(lm, TEXT))
    norms = input_norms(lm, ids)
    assert len(norms) == 30 * 7 and norms["layers.0.mlp.down_proj"].shape == (lm.model.config.intermediate_size,)
    pruner = make_pruner(lm, 0.5, "wanda", "unstructured", ids)
    w = lm.model.model.layers[0].mlp.up_proj.weight
    pruned = pruner("layers.0.mlp.up_proj", w)
    assert float((pruned == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert torch.equal(w, lm.model.model.layers[0].mlp.up_proj.weight)    # the shared weight is untouched
    wanda = damage(lm, list(ids), pruner)
    magnitude = damage(lm, list(ids), make_pruner(lm, 0.5, "magnitude", "unstructured", ()))
    assert wanda.perplexity < magnitude.perplexity      # on its own calibration text, activation-aware wins
