"""The QLoRA page: the NF4 levels drawn are bitsandbytes' sixteen, the NF4 / INT4 / INT8 errors shown are the
engine's on the real matrix, the verdict follows the measured ratio, double quantization's bits and the memory
figures are recomputed here, and the whole-model perplexities come from the traced forward."""
import numpy as np
import pytest

from engine.serving.compression import damage, linear_weight
from engine.tokens.offsets import token_ids
from engine.training.qlora import (BlockQuantizer, LLAMA_1, finetune_memory, matrix_errors, quantize_nf4,
                                   quantize_uniform, shape_of, storage_bits)
from tests.pages import assert_no_exception, chart, open_page, plotly_array, run_until, shown_text
from tests.test_qlora import BITSANDBYTES_NF4
from ui.qlora import matrix_verdict
from ui.text import human_bytes

SHORT = "The cat sat on the warm mat and watched the rain fall on the quiet garden all afternoon."
PARAGRAPH = ("Bees visit flowers to collect nectar and pollen. As they move from one flower to the next, they carry "
             "pollen on their bodies, which fertilises the plants and lets them make seeds and fruit. Without "
             "bees, many crops such as apples, almonds and blueberries would give far smaller harvests.")


def metric(at, label):
    return next(m for m in at.metric if m.label == label)


def grid(spec, prefix):
    trace = next(t for t in spec["data"] if t.get("name", "").startswith(prefix))
    xs = plotly_array(trace["x"])
    return np.unique(xs[~np.isnan(xs)])


def scan_done(at):
    return "matrices (blocks of" in shown_text(at)


def test_defaults_show_the_standard_levels_the_real_errors_and_the_memory(lm):
    at = open_page("qlora")
    assert_no_exception(at)
    spec = chart(at, "levels_chart")
    np.testing.assert_allclose(grid(spec, "NF4"), BITSANDBYTES_NF4, atol=1e-6)      # the 16 standard levels
    np.testing.assert_allclose(grid(spec, "INT4"), np.arange(-7, 8) / 7, atol=1e-9)
    weight = linear_weight(lm, "layers.0.self_attn.q_proj")
    counts = plotly_array(next(t for t in spec["data"] if t["type"] == "bar")["y"])
    assert counts.sum() == weight.numel()

    errors = matrix_errors(weight, 64)
    for variant in ("NF4", "INT4", "INT8"):           # both 4-bit errors (and INT8) are shown, as measured
        shown = metric(at, f"{variant} error")
        assert shown.value == f"{100 * errors[variant].relative:.2f}%"
        assert shown.delta == f"MSE {errors[variant].mse:.3g}"
    ratio = errors["NF4"].mse / errors["INT4"].mse
    assert metric(at, "NF4 MSE ÷ INT4 MSE").value == f"{ratio:.2f}"
    wins, verdict = matrix_verdict(ratio, 0.0)
    assert wins == (ratio < 1) and ("% lower" in shown_text(at)) == wins
    independent = float((quantize_nf4(weight, 64) - weight).pow(2).mean()) / \
        float((quantize_uniform(weight, 4, 64) - weight).pow(2).mean())
    assert independent == pytest.approx(ratio, rel=1e-4)

    bits = storage_bits(weight.numel(), 64)
    assert metric(at, "4 bits + float32 constants").value == "4.500 bits"
    assert metric(at, "With double quantization").value == f"{bits.double:.3f} bits" == "4.127 bits"
    assert metric(at, "Saved").value == "0.373 bits"
    saved_65b = storage_bits(10**9, 64).saved / 8 * LLAMA_1[-1].parameters
    assert metric(at, "Saved on LLaMA-65B").value == human_bytes(saved_65b)
    assert metric(at, "Saved on LLaMA-65B").value.startswith("3.0")          # "about 3 GB" on 65B

    count = sum(p.numel() for p in lm.model.parameters())
    assert metric(at, "SmolLM2 parameters").value == f"{count:,}"
    memory = finetune_memory(shape_of(lm.model), 16, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                      "up_proj", "down_proj"), parameters=count)
    assert metric(at, "Full fine-tuning").value == human_bytes(16 * count)
    assert metric(at, "LoRA").value == human_bytes(memory.lora)
    assert metric(at, "QLoRA").value == human_bytes(memory.qlora)



def test_share_link_measures_the_whole_model_in_nf4_int4_int8(lm):
    params = {"layer": "7", "matrix": "mlp.down_proj", "block": "32", "rank": "64", "targets": "q_proj and v_proj",
              "dq": "false", "text": PARAGRAPH}
    at = open_page("qlora", params)
    assert_no_exception(at)
    errors = matrix_errors(linear_weight(lm, "layers.6.mlp.down_proj"), 32)
    assert metric(at, "NF4 error").value == f"{100 * errors['NF4'].relative:.2f}%"
    assert metric(at, "4 bits + float32 constants").value == "5.000 bits"      # 4 + 32/32
    memory = finetune_memory(shape_of(lm.model), 64, ("q_proj", "v_proj"))
    assert metric(at, "LoRA").delta == f"{memory.adapter_params:,} adapter params"

    run_until(at, lambda a: any(m.label == "NF4 perplexity" for m in a.metric))
    assert_no_exception(at)
    ids = token_ids(lm, PARAGRAPH)
    nf4 = damage(lm, ids, BlockQuantizer("nf4", 32, False))
    int4 = damage(lm, ids, BlockQuantizer("int4", 32, False))
    assert metric(at, "NF4 perplexity").value == f"{nf4.perplexity:,.2f}"
    assert metric(at, "float32").value == f"{nf4.base_perplexity:,.2f}"
    shown = {v: float(metric(at, f"{v} perplexity").value.replace(",", "")) for v in ("NF4", "INT4", "INT8")}
    assert shown["INT8"] == pytest.approx(nf4.base_perplexity, rel=0.03)    # 8 bits: nearly free
    assert shown["INT4"] == pytest.approx(int4.perplexity, abs=0.006)
    assert nf4.mean_kl < int4.mean_kl                       # NF4 moves the predictions less than INT4
    assert ("lower perplexity than float32" in shown_text(at)) == any(p < nf4.base_perplexity for p in shown.values())
    bars = chart(at, "perplexity_chart")["data"][0]
    assert list(bars["x"]) == ["NF4", "INT4", "INT8"]                          # no "+ DQ": it is off


def test_the_verdict_says_when_int4_wins_and_why():
    wins, text = matrix_verdict(1.12, -0.8)
    assert not wins and "INT4 beats NF4" in text and "normally distributed" in text and "1.12" in text
    wins, text = matrix_verdict(0.6, 3.0)
    assert wins and "40% lower" in text


def test_too_little_text_asks_for_more_and_the_scan_still_covers_every_matrix(lm):
    at = open_page("qlora", {"text": "Hi"})        # no whole-model job: the scan runs alone
    assert_no_exception(at)
    assert "Give the model a sentence or two" in shown_text(at)
    chart(at, "levels_chart")
    chart(at, "memory_chart")
    run_until(at, scan_done)
    assert_no_exception(at)
    ratios = plotly_array(chart(at, "scan_chart")["data"][0]["z"])
    assert ratios.shape == (7, 30) and not np.isnan(ratios).any()
    errors = matrix_errors(linear_weight(lm, "layers.0.self_attn.q_proj"), 64)
    assert ratios[0, 0] == pytest.approx(errors["NF4"].mse / errors["INT4"].mse, rel=1e-5)   # layer 1 q_proj
    wins_shown = int(shown_text(at).split("NF4 is closer than INT4 on **")[1].split(" of")[0])
    assert wins_shown == int((ratios < 1).sum())
