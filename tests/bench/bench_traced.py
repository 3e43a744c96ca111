"""The traced forward on a 64-token text against the model's own forward.

Two comparisons: recording every layer's attention probabilities against the eager module with
output_attentions=True (target: at most 1.5x), and a pass that records nothing against the SDPA model.
The passes alternate, so a neighbour's load on the shared cores falls on both sides alike.
"""
from __future__ import annotations

import os
import statistics

import torch

from engine.inside.attention import attention_step, capture
from engine.runtime.gate import model_work
from engine.tokens.offsets import token_ids
from engine.model.traced import Interventions, trace
from tests.bench.bench_attention import text_of_64_tokens
from tests.bench.timing import p50_p95_ms, timed

REPEAT = 15


def _model(module, ids: list[int], attentions: bool):
    with model_work():
        return module(torch.tensor([ids]), output_attentions=attentions, use_cache=False)


def _interleaved(a, b, repeat: int = REPEAT) -> tuple[list[float], list[float]]:
    times_a, times_b = [], []
    for _ in range(repeat):
        times_a += timed(a, repeat=1, warmup=0)
        times_b += timed(b, repeat=1, warmup=0)
    return times_a, times_b


def _ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.median(a) / statistics.median(b):.2f}x"


def run(lm) -> list[tuple[str, str]]:
    text = text_of_64_tokens(lm)
    ids = token_ids(lm, text)
    every_layer = frozenset({"probs"})
    for warm in (lambda: trace(lm, ids, record=every_layer), lambda: _model(lm.eager, ids, True),
                 lambda: trace(lm, ids), lambda: _model(lm.model, ids, False)):
        warm()
    rows = [("text length (tokens)", str(len(ids))),
            ("torch threads / machine load average (1 min) / CPUs",
             f"{torch.get_num_threads()} / {os.getloadavg()[0]:.1f} / {os.cpu_count()}")]

    traced, eager = _interleaved(lambda: trace(lm, ids, record=every_layer), lambda: _model(lm.eager, ids, True))
    rows += [("traced pass, probs of all 30 layers", p50_p95_ms(traced)),
             ("eager model, output_attentions=True", p50_p95_ms(eager)),
             ("ratio traced / eager (p50; target <= 1.5x)", _ratio(traced, eager))]

    plain, model = _interleaved(lambda: trace(lm, ids), lambda: _model(lm.model, ids, False))
    rows += [("traced pass, nothing recorded", p50_p95_ms(plain)),
             ("SDPA model forward", p50_p95_ms(model)),
             ("ratio traced / model (p50)", _ratio(plain, model))]

    lens = timed(lambda: trace(lm, ids, record={"logit_lens"}), repeat=5)
    rows.append(("traced pass + logit lens, 30 layers x every position", p50_p95_ms(lens)))
    rows.append(("traced pass + logit lens, 30 layers x last position", p50_p95_ms(timed(
        lambda: trace(lm, ids, record={"logit_lens_last"}), repeat=5))))
    ablated = timed(lambda: trace(lm, ids, interventions=Interventions(
        kv_groups=1, ablate_heads=frozenset({(5, 2)}), activation="gelu")), repeat=5)
    rows.append(("traced pass, MQA + a head ablated + GELU", p50_p95_ms(ablated)))

    cap = capture(lm, text)
    fresh = iter([0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 29, 28])   # never the same layer twice: each one traced anew
    rows.append(("attention_step: worked row in a layer not yet traced (layers 0..29)", p50_p95_ms(timed(
        lambda: attention_step(lm, cap, next(fresh), 4, len(cap.ids) - 1), repeat=12, warmup=0))))
    rows.append(("attention_step: another head/query in a traced layer", p50_p95_ms(timed(
        lambda: attention_step(lm, cap, 29, 7, len(cap.ids) // 2), repeat=10))))
    return rows
