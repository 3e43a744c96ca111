"""The quantization page: measured against the float32 model on the reader's text, 8 bits is nearly free,
2 bits is not, and the numbers shown are the engine's."""
import json

import pytest

from engine.serving.compression import Quantizer, bits_per_weight, block_linear_weights, damage
from engine.tokens.offsets import token_ids
from tests.pages import assert_no_exception, open_page, run_until, shown_text

DEFAULT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
           "movable metal type with an oil-based ink and a wooden press. Books became cheaper, and ideas spread "
           "faster. Within fifty years, presses were working in more than two hundred cities across Europe, and "
           "millions of books had been printed. Scholars could compare the same text in different places, "
           "errors could be corrected in the next edition, and news travelled in pamphlets that anyone could "
           "buy for a few coins.")


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def sweep_data(at):
    chart = next(c for c in at.get("plotly_chart") if '"bits per weight"' in c.proto.spec)
    return json.loads(chart.proto.spec)["data"]


def has_sweep(at):
    return any('"bits per weight"' in c.proto.spec for c in at.get("plotly_chart"))


def test_defaults_measure_4_bit_groups_and_the_sweep_orders_the_bit_widths(lm):
    at = open_page("quantization")
    assert_no_exception(at)
    expected = damage(lm, token_ids(lm, DEFAULT), Quantizer(4, "group", "absmax", 32))
    assert metric(at, "Perplexity") == f"{expected.perplexity:,.2f}"
    assert metric(at, "Mean KL to float32") == f"{expected.mean_kl:.4f} nats"
    assert metric(at, "Top-1 token unchanged") == f"{100 * expected.top1_agreement:.1f}%"
    block = next(m for m in at.metric if m.label == "Block weights")
    assert block.delta.startswith(f"{bits_per_weight(4, 'group', 'absmax', 32):.2f} bits/weight")
    run_until(at, has_sweep)
    perplexity, unchanged = sweep_data(at)[:2]
    by_bits = dict(zip(perplexity["x"], perplexity["y"]))
    assert by_bits[8] == pytest.approx(expected.base_perplexity, rel=0.02)     # 8 bits: within 2% of float32
    assert by_bits[2] > 10 * by_bits[8] and by_bits[4] > by_bits[8]
    assert unchanged["y"][0] > unchanged["y"][-1]


def test_share_link_per_tensor_is_far_worse_than_per_group(lm):
    at = open_page("quantization", {"granularity": "per tensor", "bits": "4", "layer": "3",
                                    "matrix": "mlp.up_proj"})
    assert_no_exception(at)
    ids = token_ids(lm, DEFAULT)
    per_tensor = damage(lm, ids, Quantizer(4, "tensor", "absmax", 32))
    assert metric(at, "Perplexity") == f"{per_tensor.perplexity:,.2f}"
    assert per_tensor.perplexity > damage(lm, ids, Quantizer(4, "group", "absmax", 32)).perplexity
    assert "Levels used in this sample: " in shown_text(at)
    levels = int(shown_text(at).split("Levels used in this sample: ")[1].split(".")[0].replace(",", ""))
    assert levels <= 15                                  # one 4-bit absmax grid for the whole matrix
    assert f"{block_linear_weights(lm) * 4 / 8 / 1e6:,.2f} MB" in metric(at, "Block weights")


def test_a_few_words_are_not_enough_to_measure(lm):
    at = open_page("quantization", {"text": "Hello there"})
    assert_no_exception(at)
    assert "Give the model a few sentences" in shown_text(at)
