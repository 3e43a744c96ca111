"""The optimizers page's cached work: the 2-D surface paths (cheap, cached by their settings) and the race of the
baby GPT under four optimizers (one job running the four runs in turn, keyed by their configs)."""
from __future__ import annotations

import streamlit as st

from engine.runtime.jobs import Job, job_registry
from engine.training.lab import OPTIMIZER_NAMES, RunConfig
from engine.training.optimizer_race import SURFACES, OptimizerRace, SurfacePath, race, race_configs, surface_path

RACE_BUDGET_S = 240   # four runs one after the other; a stop or the budget keeps what was done
MAX_PATH_STEPS = 300


def surface_paths(steps: int, lr_factor: float, noise: float, seed: int, weight_decay: float
                  ) -> dict[str, dict[str, SurfacePath]]:
    """Every optimizer's path over every surface, {surface: {optimizer: path}}: the longest walks are computed
    once per setting and cut to `steps`, so the steps slider reruns nothing."""
    full = _full_paths(lr_factor, noise, seed, weight_decay)
    return {surface: {name: path.first(steps) for name, path in by_opt.items()} for surface, by_opt in full.items()}


@st.cache_data(max_entries=32, show_spinner=False)
def _full_paths(lr_factor: float, noise: float, seed: int, weight_decay: float) -> dict[str, dict[str, SurfacePath]]:
    return {surface: {name: surface_path(surface, name, MAX_PATH_STEPS, lr_factor=lr_factor, noise=noise, seed=seed,
                                         weight_decay=weight_decay) for name in OPTIMIZER_NAMES}
            for surface in SURFACES}


@st.cache_data(max_entries=8, show_spinner=False)
def surface_grid(surface: str):
    return SURFACES[surface].grid()


def race_job(base: RunConfig, lr_factor: float) -> Job:
    """The four runs for these settings: running, stored, or started now."""
    configs = race_configs(base, lr_factor=lr_factor)

    def work(ctx) -> OptimizerRace:
        def on_step(index: int, report) -> None:
            config = configs[index]
            done = index * config.steps + report.step
            ctx.report(done / (len(configs) * config.steps),
                       f"Run {index + 1} of {len(configs)}, {OPTIMIZER_NAMES[config.optimizer]}: step "
                       f"{report.step:,} of {config.steps:,} · minibatch loss {report.loss:.3f} · "
                       f"{report.elapsed_s:.1f} s")

        return race(configs, on_step=on_step, should_stop=ctx.should_stop)

    return job_registry().submit(("optimizer-race", configs), work, title="optimizer race", budget_s=RACE_BUDGET_S)
