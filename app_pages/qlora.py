from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.qlora import levels_histogram, memory_bars, perplexity_bars, scan_heatmap
from engine.training.qlora import (BYTES_PER_FROZEN_PARAM, BYTES_PER_TRAINED_PARAM, LINEAR_TARGETS, LLAMA_1,
                                   PROJECTIONS, SECOND_BLOCK, finetune_memory, kurtosis_rank_correlation, nf4_levels,
                                   shape_of, storage_bits, uniform_levels)
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.jobs import follow
from ui.layout import metric_row
from ui.qlora import ids_of, matrix_scan, matrix_verdict, matrix_view, model_comparison
from ui.text import described_metric, human_bytes

DEFAULT_TEXT = ("The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
                "movable metal type with an oil-based ink and a wooden press. Books became cheaper, and ideas spread "
                "faster. Within fifty years, presses were working in more than two hundred cities across Europe.")
BLOCKS = [32, 64, 128, 256, 1024]
TARGETS = {"every linear layer": LINEAR_TARGETS, "q_proj and v_proj": ("q_proj", "v_proj")}
RANKS = [4, 8, 16, 32, 64, 128]
GPUS = (("24 GB (RTX 4090)", 24), ("48 GB (A6000, A40)", 48), ("80 GB (A100, H100)", 80))


def readable(name: str) -> str:
    """"layers.27.mlp.gate_proj" (0-based, the traced forward's name) as "layer 28 mlp.gate_proj"."""
    _, index, part, projection = name.split(".")
    return f"layer {int(index) + 1} {part}.{projection}"


def percent(x: float) -> str:
    return f"{100 * x:.2f}%"


with concept_page("qlora"):
    st.subheader("One real matrix in 4 bits", anchor=False)
    c1, c2, c3 = st.columns([1.3, 1.3, 1.4])
    layer = c1.slider("Layer", 1, lm().card.layers, 1, key="layer", bind="query-params")
    projection = c2.selectbox("Matrix", PROJECTIONS, index=0, key="matrix", bind="query-params",
                              help="Which linear layer of the block: attention (q, k, v, o) or feed-forward "
                                   "(gate, up, down).")
    block = c3.select_slider("Block size (weights per absmax constant)", BLOCKS, value=64, key="block",
                             bind="query-params", help="Consecutive weights of the flattened matrix that share "
                                                       "one scale. QLoRA uses 64.")
    name = f"layers.{layer - 1}.{projection}"
    view = matrix_view(name, block)
    nf4, int4 = nf4_levels(), uniform_levels(4)
    centres = (view.bin_edges[:-1] + view.bin_edges[1:]) / 2
    show_chart(figure(levels_histogram, view.bin_edges, view.counts, nf4, int4,
                      title=f"{readable(name)} ({view.shape[0]} × {view.shape[1]}) ÷ block absmax"),
               partial(pd.DataFrame, {"normalised_weight": centres, "weights": view.counts}),
               name=f"nf4-levels-{name}-{block}", key="levels_chart")
    st.caption(f"Every block's largest weight lands exactly on ±1: the two edge bars hold one weight in {block}. "
               "NF4 packs its levels where the weights are dense (near 0) and spends only one code on each end; "
               "INT4 absmax spaces 15 levels evenly and leaves its 16th code (−8) unused to keep zero exact. The "
               "weights shown were themselves shipped as 4-bit Q4_1 and de-quantized to float32.")

    errors = view.errors
    ratio = errors["NF4"].mse / errors["INT4"].mse
    m = metric_row(4)
    for slot, variant in zip(m[:3], ("NF4", "INT4", "INT8")):
        described_metric(slot, f"{variant} error", percent(errors[variant].relative),
                         f"MSE {errors[variant].mse:.3g}", help="Relative error ||W − Q(W)|| / ||W|| on this "
                         f"matrix, blocks of {block}; MSE is the mean squared error per weight.")
    described_metric(m[3], "NF4 MSE ÷ INT4 MSE", f"{ratio:.2f}", "below 1: NF4 is closer",
                     help="Same 4 bits, same blocks, same absmax constants: only where the 16 levels sit differs.")
    nf4_wins, verdict = matrix_verdict(ratio, view.kurtosis)
    if nf4_wins:
        st.markdown(f":material/check_circle: {verdict}")
    else:
        st.warning(verdict, icon=":material/balance:")
    st.dataframe(pd.DataFrame({"scheme": list(errors), "MSE": [e.mse for e in errors.values()],
                               "mean |error|": [e.mean_abs for e in errors.values()],
                               "relative error": [percent(e.relative) for e in errors.values()]}),
                 hide_index=True, column_config={"MSE": st.column_config.NumberColumn(format="%.3e"),
                                                 "mean |error|": st.column_config.NumberColumn(format="%.3e")})

    st.markdown("**Double quantization**: the absmax constants are themselves quantized, to 8 bits in blocks of "
                f"{SECOND_BLOCK}, with one float32 constant per block of constants.")
    bits = view.storage
    sixty_five = LLAMA_1[-1].parameters
    d = metric_row(4)
    described_metric(d[0], "4 bits + float32 constants", f"{bits.plain:.3f} bits", "per parameter",
                     help=f"4 + 32/{block}: {bits.blocks:,} constants for {bits.weights:,} weights.")
    described_metric(d[1], "With double quantization", f"{bits.double:.3f} bits", "per parameter",
                     help=f"4 + 8/{block} + 32/({block}·{SECOND_BLOCK}), counted on this matrix: {bits.blocks:,} "
                          f"8-bit constants, {bits.second_blocks:,} float32 second-level constants and one float32 "
                          "mean (the constants are centred first).")
    described_metric(d[2], "Saved", f"{bits.saved:.3f} bits", "per parameter")
    described_metric(d[3], "Saved on LLaMA-65B", human_bytes(storage_bits(10**9, block).saved / 8 * sixty_five),
                     f"{sixty_five / 1e9:.1f} B parameters", help="The same saving on every parameter of a 65B "
                     "model (its shape from Touvron et al. 2023).")
    st.caption(f"The price: NF4's relative error on this matrix goes from {percent(errors['NF4'].relative)} to "
               f"{percent(errors['NF4 + double quant.'].relative)} with double-quantized constants.")

    st.subheader("Every matrix of the model", anchor=False)
    scores = follow(matrix_scan(block), what="scan of all matrices")
    if scores:
        ratios = np.full((len(PROJECTIONS), lm().card.layers), np.nan)
        for s in scores:
            _, i, part, proj = s.name.split(".")
            ratios[PROJECTIONS.index(f"{part}.{proj}"), int(i)] = s.ratio
        wins = sum(s.ratio < 1 for s in scores)
        show_chart(figure(scan_heatmap, ratios, PROJECTIONS,
                          title=f"NF4 error ÷ INT4 error, blocks of {block} (blue: NF4 closer)"),
                   partial(pd.DataFrame, {"matrix": [s.name for s in scores], "nf4_mse": [s.nf4_mse for s in scores],
                                          "int4_mse": [s.int4_mse for s in scores],
                                          "excess_kurtosis": [s.kurtosis for s in scores]}),
                   name=f"nf4-vs-int4-{block}", key="scan_chart")
        losers = [s for s in scores if s.ratio >= 1]
        best, worst = min(scores, key=lambda s: s.ratio), max(scores, key=lambda s: s.ratio)
        st.markdown(f"NF4 is closer than INT4 on **{wins} of {len(scores)}** matrices (blocks of {block}). "
                    + (f"Where INT4 wins (red, worst {readable(worst.name)}), the block-normalised weights are "
                       "flatter than a bell curve: NF4's levels are tuned to a normal distribution, and a different "
                       "shape can favour even spacing. " if losers else
                       "SmolLM2's weights are bell-shaped enough everywhere; weights spread evenly (flatter than a "
                       "bell) would favour INT4's even spacing instead. ")
                    + "Heavier tails tend to go with a bigger NF4 advantage, as weights crowding near zero sit where "
                      "NF4's levels are densest (rank correlation between excess kurtosis and the error ratio: "
                      f"{kurtosis_rank_correlation(scores):+.2f}). Biggest gain: {readable(best.name)} "
                      f"({best.ratio:.2f} × INT4's error, kurtosis {best.kurtosis:.1f}); smallest: "
                      f"{readable(worst.name)} ({worst.ratio:.2f} ×, kurtosis {worst.kurtosis:.1f}).")

    st.subheader("The whole model in NF4, INT4 and INT8", anchor=False)
    text = prompt_input("text", DEFAULT_TEXT, "Text to measure the model on", height=100)
    dq = st.toggle("Double quantization for NF4", value=True, key="dq", bind="query-params",
                   help="De-quantize NF4 with 8-bit block constants, as QLoRA stores them.")
    if len(ids_of(text)) < 8:
        st.info("Give the model a sentence or two (8 tokens or more): its perplexity with 4-bit and 8-bit weights "
                "is measured on your text.", icon=":material/edit:")
    else:
        results = follow(model_comparison(text, block, dq), what="NF4 / INT4 / INT8 comparison")
        if results:
            base = next(iter(results.values())).base_perplexity
            p = metric_row(4)
            described_metric(p[0], "float32", f"{base:,.2f}", "perplexity, unquantized")
            for slot, (variant, damage) in zip(p[1:], results.items()):
                described_metric(slot, f"{variant} perplexity", f"{damage.perplexity:,.2f}",
                                 f"top-1 unchanged {100 * damage.top1_agreement:.0f}%",
                                 help="Every attention and FFN matrix of the 30 blocks quantized in blocks of "
                                      f"{block}; KL to float32 {damage.mean_kl:.4f} nats per token.")
            labels = [f"NF4{' + DQ' if dq else ''}" if v == "NF4" else v for v in results]
            show_chart(figure(perplexity_bars, labels, [r.perplexity for r in results.values()], base,
                              title=f"All 210 block matrices quantized, blocks of {block}"),
                       partial(pd.DataFrame, {"weights": labels, "perplexity": [r.perplexity for r in results.values()],
                                              "mean_kl_nats": [r.mean_kl for r in results.values()],
                                              "top1_unchanged": [r.top1_agreement for r in results.values()]}),
                       name="qlora-perplexity", key="perplexity_chart")
            luckier = [v for v, r in results.items() if r.perplexity < base]
            if luckier:
                st.caption(f":material/info: {' and '.join(luckier)} scored a lower perplexity than float32 on "
                           "this text: rounding noise happened to favour these particular tokens. The KL divergence "
                           "to float32 (hover the metrics) shows the predictions still moved; a longer text "
                           "averages such luck away.")
            st.caption("The tied embedding / output matrix stays in float32, as QLoRA's 4-bit loading leaves "
                       "embeddings and the output layer in 16-bit. In QLoRA these frozen 4-bit weights are "
                       "de-quantized on the fly for each matrix product, and the LoRA adapters trained on top learn "
                       "to make up for part of the damage measured here.")

    st.subheader("Memory to fine-tune", anchor=False)
    r1, r2 = st.columns([1.2, 1.8])
    rank = r1.select_slider("LoRA rank r", RANKS, value=16, key="rank", bind="query-params")
    target_name = r2.radio("Adapters on", list(TARGETS), horizontal=True, key="targets", bind="query-params",
                           help="Hu et al. (2021) adapted q_proj and v_proj; adapting every linear layer is "
                                "common with QLoRA.")
    targets = TARGETS[target_name]
    smol = shape_of(lm().model)
    real_count = sum(p.numel() for p in lm().model.parameters())
    rows = [finetune_memory(smol, rank, targets, parameters=real_count)] + [
        finetune_memory(s, rank, targets) for s in LLAMA_1]
    mem = metric_row(4)
    described_metric(mem[0], "SmolLM2 parameters", f"{real_count:,}", "counted on the loaded model")
    described_metric(mem[1], "Full fine-tuning", human_bytes(rows[0].full), f"{BYTES_PER_TRAINED_PARAM} B/param")
    described_metric(mem[2], "LoRA", human_bytes(rows[0].lora), f"{rows[0].adapter_params:,} adapter params")
    described_metric(mem[3], "QLoRA", human_bytes(rows[0].qlora), f"{rows[0].qlora / rows[0].full:.1%} of full")
    show_chart(figure(memory_bars, [r.name for r in rows], [r.full for r in rows], [r.lora for r in rows],
                      [r.qlora for r in rows], GPUS, title=f"Weights + gradients + Adam states, LoRA rank {rank}"),
               partial(pd.DataFrame, {"model": [r.name for r in rows], "parameters": [r.parameters for r in rows],
                                      "adapter_params": [r.adapter_params for r in rows],
                                      "full_bytes": [r.full for r in rows], "lora_bytes": [r.lora for r in rows],
                                      "qlora_bytes": [r.qlora for r in rows]}),
               name="finetune-memory", key="memory_chart")
    st.caption(f"Assumptions: a trained parameter costs {BYTES_PER_TRAINED_PARAM} bytes (bf16 weight 2, bf16 "
               "gradient 2, float32 master copy 4, Adam's two float32 moments 8); a frozen one "
               f"{BYTES_PER_FROZEN_PARAM} bytes in bf16 for LoRA; for QLoRA the block matrices take "
               f"{storage_bits(10**9, 64).double:.3f} bits (NF4, blocks of 64, double quantization) and embeddings "
               "and norms stay in bf16. Activations are left out: they grow with batch size and sequence length "
               "(QLoRA also pages optimizer states to CPU memory when the GPU runs short). SmolLM2's row uses its "
               "real parameter count and shapes; the LLaMA rows use the shapes in Touvron et al. (2023).")
