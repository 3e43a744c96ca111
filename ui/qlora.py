"""Cached results for the QLoRA page: one matrix in NF4 (instant), and the whole-model runs as jobs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from engine.runtime.gate import model_work
from engine.runtime.jobs import Job, job_registry
from engine.serving.compression import linear_weight
from engine.tokens.offsets import token_ids
from engine.training.qlora import (ReconstructionError, StorageBits, compare_models, excess_kurtosis,
                                   matrix_errors, normalised_weights, scan_matrices, storage_bits)
from ui.models import lm

HISTOGRAM_BINS = 200


@dataclass(frozen=True)
class MatrixView:
    name: str
    shape: tuple[int, int]
    bin_edges: np.ndarray         # of the normalised weights, [-1, 1]
    counts: np.ndarray
    errors: dict[str, ReconstructionError]
    kurtosis: float
    storage: StorageBits


@st.cache_data(max_entries=64, show_spinner=False)
def matrix_view(name: str, block: int) -> MatrixView:
    with model_work():
        weight = linear_weight(lm(), name)
        counts, edges = np.histogram(normalised_weights(weight, block), bins=HISTOGRAM_BINS, range=(-1, 1))
        return MatrixView(name, tuple(weight.shape), edges, counts, matrix_errors(weight, block),
                          excess_kurtosis(weight), storage_bits(weight.numel(), block))


@st.cache_data(max_entries=32, show_spinner=False)
def ids_of(text: str) -> tuple[int, ...]:
    return tuple(token_ids(lm(), text))


def model_comparison(text: str, block: int, double_quant: bool) -> Job:
    model, ids = lm(), list(ids_of(text))

    def work(ctx):
        ctx.report(0.0, "Quantizing all 210 block matrices to NF4 and running your text...")
        return compare_models(model, ids, block, double_quant, should_stop=ctx.should_stop,
                              on_step=lambda d, t: ctx.report(d / t, f"{d} of {t} quantized models measured"))

    return job_registry().submit(("qlora models", tuple(ids), block, double_quant), work,
                                 title="NF4 / INT4 / INT8 perplexity", budget_s=180)


def matrix_scan(block: int) -> Job:
    model = lm()

    def work(ctx):
        return scan_matrices(model, block, should_stop=ctx.should_stop,
                             on_step=lambda d, t: ctx.report(d / t, f"{d} of {t} matrices quantized both ways"))

    return job_registry().submit(("qlora scan", block), work, title="NF4 vs INT4 on every matrix", budget_s=180)


def matrix_verdict(ratio: float, kurtosis: float) -> tuple[bool, str]:
    """(NF4 wins, the sentence that says so and why) for one matrix: NF4's MSE as a share of INT4's."""
    if ratio < 1:
        return True, (f"On this matrix NF4's squared error is **{100 * (1 - ratio):.0f}% lower** than uniform INT4's. "
                      f"Its excess kurtosis is {kurtosis:.1f} (0 for a normal distribution, above 0 for heavier "
                      "tails): the weights are bell-shaped, dense near zero, so levels at normal quantiles fit them "
                      "better than evenly spaced ones.")
    return False, (f"On this matrix uniform INT4 beats NF4: NF4's squared error is {ratio:.2f} × INT4's. NF4 is "
                   "optimal only for normally distributed weights. These (excess kurtosis "
                   f"{kurtosis:.1f}) spread their block-normalised values more evenly than a bell curve does, so "
                   "evenly spaced levels fit them better; outliers and heavy tails also change the shape NF4 "
                   "was designed for.")
