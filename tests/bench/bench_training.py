"""The training lab: baby-GPT speed (wall and CPU time per step), time to a clear loss drop, each optimizer's
loss at a short horizon (where SUGGESTED_LR comes from), and the SmolLM2 gradient computations' cost."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from engine.tokens.offsets import token_ids
from engine.training.lab import OPTIMIZERS, SUGGESTED_LR, RunConfig, train, with_optimizer
from engine.training.smollm_step import gradient_steps, layer_gradients, loss_slice

SENTENCE = "My neighbour's dog is called Biscuit, and he barks at the postman every single morning."
CLEAR_DROP = 1.0   # nats below the first loss: from ~4.1 (uniform over 58 characters) to ~3.1


def cpu_and_wall(fn):
    cpu, wall = time.thread_time(), time.perf_counter()
    result = fn()
    return result, time.thread_time() - cpu, time.perf_counter() - wall


def run(lm) -> list[tuple[str, str]]:
    rows = []
    seen = []
    config = RunConfig()
    result, cpu, wall = cpu_and_wall(lambda: train(config, on_step=seen.append))
    rows.append((f"default run: {config.steps} steps, batch {config.batch_size} x {config.shape.context} chars",
                 f"{wall:.1f} s wall ({result.steps_per_second:.1f} steps/s), {cpu:.1f} s CPU "
                 f"({1000 * cpu / config.steps:.1f} ms CPU per step incl. evals and samples)"))
    first = result.evals[0].val_loss
    drop = next((e for e in result.evals if e.val_loss < first - CLEAR_DROP), None)
    if drop is not None:
        at = next(s.elapsed_s for s in seen if s.step == drop.step)
        rows.append((f"time to a clear drop (validation loss {first:.2f} -> below {first - CLEAR_DROP:.2f})",
                     f"step {drop.step}, {at:.1f} s wall"))
    rows.append(("default run: validation loss first -> last", f"{first:.3f} -> {result.last.val_loss:.3f}"))
    for name in OPTIMIZERS:
        for factor in (0.3, 1.0, 3.0):
            lr = SUGGESTED_LR[name] * factor
            r = train(replace(with_optimizer(config, name, lr), steps=150, eval_every=150, sample_chars=1))
            rows.append((f"{name} peak lr {lr:g}, 150 steps: validation loss", f"{r.last.val_loss:.3f}"
                         + (f" ({r.stopped})" if r.stopped else "")))
    ids = token_ids(lm, SENTENCE)
    for label, fn in (("SmolLM2 one step on the last block", lambda: gradient_steps(lm, ids, ids, 0.01, 1)),
                      ("SmolLM2 per-block gradient norms (full backward)", lambda: layer_gradients(lm, ids)),
                      ("SmolLM2 loss line, 41 points", lambda: loss_slice(lm, ids, np.linspace(-0.1, 0.4, 41)))):
        _, cpu, wall = cpu_and_wall(fn)
        rows.append((f"{label}, {len(ids)} tokens", f"{wall:.2f} s wall, {cpu:.2f} s CPU"))
    return rows
