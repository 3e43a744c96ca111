from dataclasses import replace
from functools import partial

import pandas as pd
import streamlit as st

from charts.optimizers import race_curves, surface_paths, weight_paths
from engine.training.corpus import load_corpus
from engine.training.lab import OPTIMIZER_NAMES, OPTIMIZERS, SUGGESTED_LR, RunConfig
from engine.training.optimizer_race import SURFACES
from ui import concept_page, lm
from ui.charts import figure, show_chart
from ui.inputs import whole_number_input
from ui.jobs import follow
from ui.layout import metric_row
from ui.optimizers import MAX_PATH_STEPS, race_job, surface_grid, surface_paths as cached_paths
from ui.text import human_bytes

RATE_FACTORS = ["×0.3", "×1", "×3"]          # times each optimizer's own suggested rate
NOISE_LEVELS = ["0", "0.25", "0.5", "1"]     # Gaussian noise, as a multiple of the gradient's length
WEIGHT_DECAYS = ["0", "0.01", "0.1"]
RACE_STEPS = [50, 100, 150, 200, 300]
SHORT = {"sgd": "SGD", "momentum": "Momentum", "adam": "Adam", "adamw": "AdamW"}
SHORT_SURFACES = {"rosenbrock": "Rosenbrock", "ravine": "ravine 40:1", "bumpy": "bumpy bowl"}
STATE_FLOATS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}   # extra numbers kept per weight


def choice(value, options, default):
    return value if value in options else default


with concept_page("optimizers"):
    params = lm().card.parameters   # loaded before any training job starts (both import transformers)
    st.subheader("1 · Four optimizers on three loss surfaces", anchor=False)
    st.markdown("Each path is one point (two weights) updated by **torch.optim's own SGD, momentum, Adam and AdamW**, "
                "built by the same function that trains the baby GPT below. Add gradient noise to see what "
                "minibatches do to them.")
    c1, c2, c3, c4 = st.columns(4)
    steps = c1.slider("Steps", 10, MAX_PATH_STEPS, 150, 10, key="steps", bind="query-params",
                      help="Updates from the white start point towards the star.")
    factor_text = choice(c2.select_slider("Learning rate", RATE_FACTORS, value="×1", key="rate", bind="query-params",
                                          help="A multiple of each optimizer's own rate for each surface (listed in "
                                               "the table). ×3 shows who overshoots first."), RATE_FACTORS, "×1")
    noise_text = choice(c3.select_slider("Gradient noise", NOISE_LEVELS, value="0", key="noise", bind="query-params",
                                         help="Gaussian noise added to every gradient, as long as this fraction of "
                                              "the gradient: the jitter a minibatch gives."), NOISE_LEVELS, "0")
    decay_text = choice(c4.select_slider("Weight decay λ", WEIGHT_DECAYS, value="0.1", key="wd", bind="query-params",
                                         help="Used on this surface and in the race below. Adam adds λ·θ to the "
                                              "gradient (L2); AdamW shrinks the weights directly (decoupled)."),
                        WEIGHT_DECAYS, "0.1")
    factor, noise, decay = float(factor_text[1:]), float(noise_text), float(decay_text)
    seed = 0
    if noise > 0:
        seed = whole_number_input("Noise seed", 0, 1_000_000, 0, "seed", help="Fixes the noise draws.")
    paths = cached_paths(int(steps), factor, noise, seed, decay)
    panels = []
    for name, spec in SURFACES.items():
        xs, ys, zz = surface_grid(name)
        panels.append(dict(title=spec.title, xs=xs, ys=ys, zz=zz, start=spec.start, minimum=spec.minimum,
                           paths={o: p.points for o, p in paths[name].items()}))
    rows = [{"surface": SURFACES[s].title, "optimizer": OPTIMIZER_NAMES[o], "learning_rate": p.lr, "step": i,
             "x": x, "y": y, "loss": p.losses[i]}
            for s, by_opt in paths.items() for o, p in by_opt.items() for i, (x, y) in enumerate(p.points)]
    show_chart(figure(surface_paths, panels, OPTIMIZER_NAMES,
                      title=f"{steps} steps of each optimizer" + (f", gradient noise {noise:g}" if noise else "")),
               partial(pd.DataFrame, rows), name="optimizer-paths-2d", key="surfaces")
    best = {s: min(by_opt, key=lambda o: by_opt[o].final_distance) for s, by_opt in paths.items()}
    cols = metric_row(len(SURFACES))
    for col, (s, by_opt) in zip(cols, paths.items()):
        winner = by_opt[best[s]]
        col.metric(f"Closest: {SHORT_SURFACES[s]}", SHORT[best[s]],
                   f"{winner.final_distance:.3f} away, loss {winner.losses[-1]:.3g}", delta_color="off",
                   delta_arrow="off", help=f"The optimizer whose last point is nearest the minimum of {SURFACES[s].title} "
                                           f"({SURFACES[s].note}), measured on these paths.")
    table = pd.DataFrame([{"surface": SURFACES[s].title, "optimizer": OPTIMIZER_NAMES[o], "learning rate": p.lr,
                           "loss at start": p.losses[0], f"loss after {steps} steps": p.losses[-1],
                           "distance to minimum": p.final_distance}
                          for s, by_opt in paths.items() for o, p in by_opt.items()])
    with st.expander("Every path's numbers"):
        st.dataframe(table, hide_index=True, width="stretch", key="paths_table", column_config={
            c: st.column_config.NumberColumn(format="%.4g") for c in table.columns[2:]})
    st.caption("What to look for: plain SGD zig-zags across the 40:1 ravine and crawls along Rosenbrock's flat "
               "valley floor; momentum builds up speed along the valley and can roll over small bumps (and past the "
               "minimum); Adam and "
               "AdamW take steps of about the same size in every direction, whatever the slope. "
               f"With λ = 0 AdamW's path is exactly Adam's. With λ > 0 both are pulled towards (0, 0), so the star "
               "is no longer quite the minimum they seek.")

    st.subheader("2 · The same baby GPT, trained four times", anchor=False)
    st.markdown("A two-block decoder with SmolLM2's block design, trained from the **same random weights on the same "
                "batches**, once per optimizer at its own suggested peak rate (warmup, then cosine decay, gradients "
                "clipped at norm 1). Only the optimizer differs.")
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    race_steps = choice(c1.select_slider("Steps per run", RACE_STEPS, value=150, key="race_steps",
                                         bind="query-params", help="Four runs, one after the other."),
                        RACE_STEPS, 150)
    race_text = choice(c2.select_slider("Peak rates", RATE_FACTORS, value="×1", key="race_rate", bind="query-params",
                                        help="Times each optimizer's suggested peak: " + ", ".join(
                                            f"{OPTIMIZER_NAMES[o]} {SUGGESTED_LR[o]:g}" for o in OPTIMIZERS)),
                       RATE_FACTORS, "×1")
    race_seed = whole_number_input("Seed", 0, 1_000_000, 0, "race_seed", container=c3,
                                   help="Fixes the shared initial weights and batches.")
    base = RunConfig(seed=race_seed, steps=int(race_steps), weight_decay=decay)
    result = None
    if st.toggle("Train them live", value=True, key="train", bind="query-params",
                 help="About a minute on this shared CPU; the result is kept, so a shared link opens it at once."):
        result = follow(race_job(base, float(race_text[1:])), what="optimizer race")
    else:
        st.info("Switch on **Train them live** to race the four optimizers on the baby GPT.",
                icon=":material/model_training:")
    if result is not None:
        runs = result.runs
        names, keys = [OPTIMIZER_NAMES[r.config.optimizer] for r in runs], [r.config.optimizer for r in runs]
        st.markdown(f"**Validation loss after {runs[0].last.step:,} steps** (on fable text none of them trained on):")
        for col, run in zip(metric_row(len(runs)), runs):
            col.metric(f"{SHORT[run.config.optimizer]}: loss", f"{run.last.val_loss:.3f}",
                       f"{run.last.val_loss - run.first_loss:+.3f} from {run.first_loss:.3f} at step 0",
                       delta_color="inverse", help=f"Validation loss after {run.last.step} steps at peak rate "
                                                   f"{run.config.schedule.peak_lr:g}, on text never trained on.")
        if result.same_start and result.same_batches:
            st.success(f"All four started from the same weights (digest `{runs[0].initial_weights_digest}`) and read "
                       f"the same batches (digest `{runs[0].batches_digest}`): identical step-0 loss "
                       f"{runs[0].first_loss:.3f}.", icon=":material/check_circle:")
        stopped = [r for r in runs if r.stopped]
        if stopped:
            st.warning("Not every run finished (stop button, time budget or divergence): " + ", ".join(
                f"{OPTIMIZER_NAMES[r.config.optimizer]} {r.stopped} after {len(r.steps)} steps" for r in stopped),
                icon=":material/stop_circle:")
        show_chart(figure(race_curves, names, keys, [[s.step for s in r.steps] for r in runs],
                          [[s.loss for s in r.steps] for r in runs], [[e.step for e in r.evals] for r in runs],
                          [[e.val_loss for e in r.evals] for r in runs], load_corpus().uniform_loss,
                          title="Validation loss (thick) and each step's minibatch loss (faint)"),
                   partial(pd.DataFrame, [{"optimizer": n, "step": s.step, "learning_rate": s.lr,
                                           "minibatch_loss": s.loss, "gradient_norm": s.grad_norm}
                                          for n, r in zip(names, runs) for s in r.steps]),
                   name="optimizer-race-loss", key="race")
        paths2 = result.paths
        show_chart(figure(weight_paths, names, keys, paths2.steps, paths2.coords, paths2.explained,
                          title=f"The {runs[0].parameters:,} weights' paths, seen along their two main directions"),
                   partial(pd.DataFrame, [{"optimizer": n, "step": s, "direction_1": xy[0], "direction_2": xy[1]}
                                          for n, steps_, coords in zip(names, paths2.steps, paths2.coords)
                                          for s, xy in zip(steps_, coords)]),
                   name="optimizer-weight-paths", key="paths")
        st.caption(f"Every run kept a copy of all its weights every {runs[0].config.track_weights_every} steps. The "
                   "two axes are the directions along which all those copies spread most (a PCA, measured from the "
                   f"shared start); together they hold {paths2.explained.sum():.0%} of the spread. Runs that leave "
                   "in different directions end in different places of the same loss landscape.")
        st.dataframe(pd.DataFrame({
            "optimizer": names, "peak rate": [r.config.schedule.peak_lr for r in runs],
            "loss at step 0": [round(r.first_loss, 4) for r in runs],
            "final validation loss": [round(r.last.val_loss, 4) for r in runs],
            "initial weights digest": [r.initial_weights_digest for r in runs],
            "batches digest": [r.batches_digest for r in runs],
            "steps/s": [round(r.steps_per_second, 1) for r in runs]}), hide_index=True, width="stretch",
            key="race_table")

    st.subheader("3 · What each optimizer remembers", anchor=False)
    cols = metric_row(len(OPTIMIZERS))
    for col, name in zip(cols, OPTIMIZERS):
        col.metric(f"{SHORT[name]}: state", human_bytes(4 * STATE_FLOATS[name] * params) or "0",
                   f"{STATE_FLOATS[name]} float32 per weight" if STATE_FLOATS[name] else "nothing kept between steps",
                   delta_color="off", delta_arrow="off",
                   help="For SmolLM2's weights. Momentum keeps one running average of the gradient; Adam and AdamW keep two (the mean and "
                        "the mean square).")
    st.caption(f"For SmolLM2's {params:,} weights (counted from the loaded model), stored in float32. Adam's "
               "two numbers per weight are why training needs several times the memory of running the model.")
