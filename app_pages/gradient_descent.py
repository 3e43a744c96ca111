from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from charts.training import layer_gradients, loss_line, loss_surface, token_loss_change
from engine.tokens.offsets import visible
from engine.training.corpus import load_corpus
from engine.training.lab import OPTIMIZER_NAMES, OPTIMIZERS, SUGGESTED_LR, RunConfig, with_optimizer
from ui import concept_page, lm, prompt_input
from ui.charts import figure, show_chart
from ui.inputs import stop_if_empty, whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.loss import ids_of, pieces
from ui.training import (follow_training, show_run, smollm_layer_gradients, smollm_steps, surface_line_job,
                         surface_plane_job, training_job)

DEFAULT_TEXT = "My neighbour's dog is called Biscuit, and he barks at the postman every single morning."
DEFAULT_OTHER = "The capital of France is Paris, and the capital of Italy is Rome."
LEARNING_RATES = ["0.0001", "0.0003", "0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1"]
RATE_FACTORS = ["×0.1", "×0.3", "×1", "×3", "×10"]   # times the optimizer's suggested rate
STEPS = list(range(50, 1001, 50))
MAX_TOKENS = 64

with concept_page("gradient-descent"):
    card = lm().card
    st.subheader("1 · One real gradient step on SmolLM2", anchor=False)
    text = prompt_input("text", DEFAULT_TEXT, "The sentence to learn", height=70, max_tokens=MAX_TOKENS)
    other = prompt_input("other", DEFAULT_OTHER, "Another sentence, to watch what else changes",
                         max_tokens=MAX_TOKENS)
    stop_if_empty(text, "Type a sentence above: the model will take a gradient step to make it more likely.")
    stop_if_empty(other, "Type a second sentence to compare: it is measured but never trained on.")
    if len(ids_of(text)) < 2 or len(ids_of(other)) < 2:
        st.info("Each sentence needs at least two tokens: the first is only context for the next.",
                icon=":material/edit:")
        st.stop()
    c1, c2 = st.columns([3, 2])
    lr_text = c1.select_slider("Learning rate η", LEARNING_RATES, value="0.01", key="lr", bind="query-params",
                               help="How far each step moves the weights along minus the gradient: θ ← θ − η·g.")
    steps = c2.slider("Steps on this sentence", 1, 10, 1, key="steps", bind="query-params",
                      help="Repeat the step: each one recomputes the gradient where the last one landed.")
    lr = float(lr_text if lr_text in LEARNING_RATES else "0.01")
    result = smollm_steps(text, other, lr, steps)
    before, after = float(result.losses[0]), float(result.losses[-1])
    o_before, o_after = float(result.other_losses[0]), float(result.other_losses[-1])
    measured_first = float(result.losses[1] - result.losses[0])
    a, b, c, d = metric_row(4)
    a.metric("Loss on your sentence", f"{after:.3f}", f"{after - before:+.3f} (was {before:.3f})",
             delta_color="inverse", help="Mean -ln p(next token) over the sentence, before and after the step(s).")
    b.metric("Loss on the other sentence", f"{o_after:.3f}", f"{o_after - o_before:+.3f} (was {o_before:.3f})",
             delta_color="inverse", help="Never trained on: how the same weight change affects other text.")
    c.metric("Gradient norm ‖g‖", f"{result.grad_norms[0]:.3f}", f"over {result.trained_parameters:,} weights",
             delta_color="off", delta_arrow="off", help="The length of the gradient of the loss with respect to "
                                                        "the last block's weights, at the real weights.")
    d.metric("Predicted change", f"{result.predicted_first_change:+.3f}",
             f"measured {measured_first:+.3f}", delta_color="off", delta_arrow="off",
             help="For the first step, the gradient predicts a change of about −η‖g‖² (a first-order Taylor "
                  "expansion). Large steps leave the region where that straight line holds.")
    if after < before:
        st.success(f"**{steps} step{'s' if steps > 1 else ''} lowered the loss on your sentence** from {before:.3f} "
                   f"to {after:.3f} nats: the tokens of the sentence became more likely "
                   f"(perplexity {np.exp(before):,.2f} → {np.exp(after):,.2f}).", icon=":material/trending_down:")
    else:
        st.warning(f"At η = {lr:g} the step overshot: the loss went from {before:.3f} to {after:.3f}. The gradient "
                   "only says which way is downhill near the current weights; a smaller η stays in that region.",
                   icon=":material/trending_up:")
    labels = [visible(t) for t in pieces(ids_of(text))[1:]]
    show_chart(figure(token_loss_change, labels, result.token_losses_before, result.token_losses_after,
                      title=f"Each token's loss before and after {steps} step{'s' if steps > 1 else ''} at η = {lr:g}"),
               partial(pd.DataFrame, {"position": range(1, len(labels) + 1), "token": labels,
                                      "loss_before": result.token_losses_before,
                                      "loss_after": result.token_losses_after}),
               name="gradient-step-token-losses", key="token_losses")
    st.caption(f"What moved: a private copy of block {result.block_index + 1} of {card.layers}, the last one "
               f"({result.trained_parameters:,} of the model's {card.parameters:,} weights, counted from the loaded "
               "model). The blocks below it are frozen, so their output is computed once; the final norm and the "
               "tied output matrix above it are read as they are. The shared model is never changed.")

    st.subheader("2 · Backpropagation: one backward pass, a gradient for every weight", anchor=False)
    grads = smollm_layer_gradients(text)
    a, b, c = metric_row(3)
    a.metric("Loss the gradient is taken of", f"{grads.loss:.3f}", "SmolLM2's own loss",
             delta_color="off", delta_arrow="off")
    top_attn, top_ffn = int(np.argmax(grads.attention)), int(np.argmax(grads.ffn))
    b.metric("Largest gradient, attention", f"block {top_attn + 1}", f"‖g‖ = {grads.attention[top_attn]:.3f}",
             delta_color="off", delta_arrow="off")
    c.metric("Largest gradient, FFN", f"block {top_ffn + 1}", f"‖g‖ = {grads.ffn[top_ffn]:.3f}",
             delta_color="off", delta_arrow="off")
    block_norms = np.hypot(grads.attention, grads.ffn)
    smallest = float(block_norms.min() / block_norms.max())
    show_chart(figure(layer_gradients, grads.attention, grads.ffn,
                      title=f"Gradient norm in each of the {card.layers} blocks, for your sentence"),
               partial(pd.DataFrame, {"block": range(1, card.layers + 1), "attention_grad_norm": grads.attention,
                                      "ffn_grad_norm": grads.ffn, "norm_gains_grad_norm": grads.norms,
                                      "attention_weight_norm": grads.attention_weights,
                                      "ffn_weight_norm": grads.ffn_weights}),
               name="gradient-norm-per-block", key="layer_grads")
    st.caption(f"One backward pass from the loss to the input gives all {card.parameters:,} partial derivatives, "
               "reusing each block's result for the block below it (the chain rule, applied layer by layer). "
               f"The tied embedding matrix gets ‖g‖ = {grads.embedding:.3f}, the final norm {grads.final_norm:.3f}. "
               f"The smallest block gradient here is {smallest:.0%} of the largest"
               + (": through the residual stream the error signal reaches block 1 without fading away."
                  if smallest > 0.05 else "."))

    st.subheader("3 · The loss surface around the real weights", anchor=False)
    st.markdown("Move the last block's weights along minus the gradient by α (in the same units as η) and measure "
                "the loss at each point. Near α = 0 the loss falls along the straight line the gradient predicts; "
                "further out it curves up again: a step that is too long overshoots the valley.")
    line = follow(surface_line_job(text), what="loss line")
    if line is not None:
        in_range = line.alphas.min() <= lr <= line.alphas.max()
        show_chart(figure(loss_line, line.alphas, line.losses[0], line.loss_at_start, line.grad_norm,
                          lr if in_range else None, float(result.losses[1]) if in_range else None,
                          title="Loss on your sentence along the gradient direction (last block)"),
                   partial(pd.DataFrame, {"alpha": line.alphas, "loss": line.losses[0],
                                          "first_order_prediction": line.loss_at_start - line.alphas * line.grad_norm ** 2}),
                   name="loss-along-gradient", key="line")
        best = int(np.nanargmin(line.losses[0]))
        st.caption(f"The lowest point on this line is at α ≈ {line.alphas[best]:.3g} (loss {line.losses[0][best]:.3f}). "
                   "In a real run, steps are far smaller and taken on ever-new batches, so no single sentence is "
                   "pushed this far.")
    plane_on = st.toggle("Also map a plane (143 more points)", value=False, key="plane", bind="query-params",
                         help="Adds a random direction with the gradient's length: a 2-D slice of the surface.")
    if plane_on:
        seed = whole_number_input("Random direction seed", 0, 1_000_000, 0, "seed")
        plane = follow(surface_plane_job(text, seed), what="loss surface")
        if plane is not None:
            show_chart(figure(loss_surface, plane.alphas, plane.betas, plane.losses, lr,
                              title="Loss over a plane through the real weights of the last block"),
                       partial(pd.DataFrame, {"alpha": np.repeat(plane.alphas[None], len(plane.betas), 0).ravel(),
                                              "beta": np.repeat(plane.betas, len(plane.alphas)),
                                              "loss": plane.losses.ravel()}),
                       name="loss-surface-plane", key="plane_chart")

    st.subheader("4 · Many small steps: the baby GPT trained live", anchor=False)
    st.markdown("The same update, θ ← θ − η·g, repeated on fresh batches: a baby GPT with SmolLM2's block design "
                "trains from random weights on a small corpus of fables. Watch the loss fall and the gradient shrink.")
    optimizer = st.segmented_control("Optimizer", list(OPTIMIZERS), default="adamw", key="opt", bind="query-params",
                                     format_func=OPTIMIZER_NAMES.get, help="SGD takes the raw gradient; Adam and "
                                     "AdamW scale each weight's step by its recent gradient size.") or "adamw"
    optimizer = optimizer if optimizer in OPTIMIZERS else "adamw"
    c2, c3 = st.columns(2)
    factor = c2.select_slider("Learning rate (× suggested)", RATE_FACTORS, value="×1", key="rate",
                              bind="query-params",
                              help=f"A multiple of {SUGGESTED_LR[optimizer]:g}, a peak rate that trains this model "
                                   f"well with {OPTIMIZER_NAMES[optimizer]}.")
    train_steps = c3.select_slider("Optimizer steps", STEPS, value=300, key="train_steps", bind="query-params")
    factor = float((factor if factor in RATE_FACTORS else "×1")[1:])
    base = RunConfig()   # AdamW, the pretraining page's default run: the same settings share one stored run
    config = with_optimizer(replace(base, steps=int(train_steps if train_steps in STEPS else 300),
                                    weight_decay=base.weight_decay if optimizer == "adamw" else 0.0),
                            optimizer, SUGGESTED_LR[optimizer] * factor)
    if st.toggle("Train it live", value=True, key="train", bind="query-params"):
        run = follow_training(training_job(config), load_corpus().uniform_loss, chart_key="gd_curve")
        if run is not None:
            show_run(run, chart_key="gd_curve", with_gradients=True,
                     title=f"{OPTIMIZER_NAMES[optimizer]} at peak η = {config.schedule.peak_lr:g}: loss and gradient norm")
            st.caption(f"Same seed, so every optimizer starts from the same weights and sees the same batches. Warmup "
                       f"over {config.schedule.warmup_steps} steps, then a cosine decay; gradients clipped at norm "
                       f"{config.clip_norm:g}; weight decay {config.weight_decay:g} (only AdamW's decoupled kind is "
                       "used here). SGD moves slowly on a transformer; the optimizers page compares them side by side.")
    else:
        st.info("Switch on **Train it live** to train the baby GPT with these settings.", icon=":material/model_training:")
