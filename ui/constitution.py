"""The constitutional-ai page's model work: the critique-then-revise loop as a job keyed by its inputs."""
from __future__ import annotations

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.using.constitution import STEPS, ConstitutionRun, principle_by_name, run_constitution
from ui.models import lm

STEP_BUDGET_S = 25.0     # per generation; three generations plus two judge passes


def constitution_job(request: str, principle_name: str, max_new_tokens: int) -> Job:
    model = lm()
    principle = principle_by_name(principle_name)

    def work(ctx: JobContext) -> ConstitutionRun:
        def on_step(done: int, what: str) -> None:
            ctx.report(done / STEPS, f"Step {done + 1} of {STEPS}: {what}...")
        return run_constitution(model, request, principle, max_new_tokens, STEP_BUDGET_S, on_step=on_step,
                                should_stop=ctx.stop_requested)

    return job_registry().submit(("constitution", request, principle.name, int(max_new_tokens)), work,
                                 title="Critique-then-revise loop", budget_s=3 * STEP_BUDGET_S + 30)
