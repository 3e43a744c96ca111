"""Prompt-caching measurements for the prompt-caching page, shared by every session of this server.

The timing runs as a job (engine.runtime.jobs) keyed by (prefix, questions, new tokens): it takes several seconds, so it
runs outside the page's script run, a second reader with the same link joins it, and a shared link shows the
same stored run. "Measure again" starts a fresh job.
"""
from __future__ import annotations

from engine.runtime.jobs import Job, JobContext, job_registry
from engine.serving.prompt_cache import PrefixReuse, compare_prefix_reuse
from engine.tokens.offsets import token_ids
from ui.models import lm


def question_suffix(question: str) -> str:
    """The text a reader's request adds after the shared prefix."""
    return f"\nQuestion: {question.strip()}\nAnswer:"


def timing_job(prefix: str, questions: tuple[str, ...], new_tokens: int, budget_s: float,
               again: bool = False) -> Job:
    """The prefix-reuse timing job for these inputs: running, stored, or started now."""
    model = lm()   # loaded in the page's run: the job's thread has no page to show loading progress on
    prefix_ids = token_ids(model, prefix)
    suffixes = [token_ids(model, question_suffix(q)) for q in questions]
    steps = int(new_tokens)

    def work(ctx: JobContext) -> PrefixReuse:
        ctx.report(0.0, "Filling the shared cache with the prefix...")

        def on_progress(done: int, total: int, message: str) -> None:
            ctx.report(done / total, message)

        return compare_prefix_reuse(model, prefix_ids, suffixes, steps, on_progress=on_progress,
                                    time_budget_s=budget_s, should_stop=ctx.stop_requested)

    return job_registry().submit(("prompt-cache timing", prefix, tuple(questions), steps), work,
                                 title="Prompt-cache timing", budget_s=budget_s, fresh=again)
