"""Pages whose work runs as jobs: each page's default job from its first render to its result, and two
readers training at once while a third opens a page that trains nothing.

Targets (issues 9 and 10): a LoRA run on a few facts < 40 s; a DPO or SFT demo run < 40 s; agent runs are jobs
with progress; two readers training at once both finish, the second shown its place in the queue, and a third
reader's non-training page renders in < 2 s server-side meanwhile. The baby GPT's "clear loss drop < 15 s" is
in bench_training.

Pages run in AppTest in this process, so their jobs run in this process's one registry, through the same
CPU gate as on the server.
"""
from __future__ import annotations

import time

from concepts import load_catalogue
from engine.runtime.jobs import Job, cancel_all_jobs, job_registry

# Each page with the link state that starts its default job (lora and sft train only once switched on).
JOB_PAGES = (("pretraining", {}), ("hyperparameters", {}), ("optimizers", {}), ("lora", {"train": "true"}),
             ("sft", {"train": "true"}), ("dpo", {}), ("rlhf", {}), ("constitutional-ai", {}), ("agents", {}),
             ("rag", {}), ("prompt-injection", {}))
WAIT_S = 240
# Two readers' training runs (settings no default run uses, so both really train) and a third reader's page.
TRAINING_READERS = (("lora", {"train": "true", "rank": "4"}), ("sft", {"train": "true", "steps": "12"}))
THIRD_READER = "temperature"


def _wait(jobs: list[Job], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while any(not job.finished for job in jobs) and time.monotonic() < deadline:
        time.sleep(0.2)


def _job_line(job: Job) -> str:
    waited = (job.started_at or job.submitted_at) - job.submitted_at
    ran = (job.finished_at or time.time()) - (job.started_at or time.time())
    state = job.state.value + (f" ({job.error[:60]})" if job.error else "")
    return f"{ran:.1f} s run, {waited:.1f} s queued, {state}"


def _page_jobs(slug: str, params: dict | None = None) -> list[Job]:
    from tests.pages import open_page

    before = {id(job) for job in job_registry().active()}
    open_page(slug, params)
    return [job for job in job_registry().active() if id(job) not in before]


def run(lm) -> list[tuple[str, str]]:
    from tests.bench.bench_pages import _clear_page_caches

    live = {c.slug for c in load_catalogue().live}
    rows = []
    for slug, params in ((s, p) for s, p in JOB_PAGES if s in live):
        cancel_all_jobs()
        jobs = _page_jobs(slug, params)
        _wait(jobs)
        if not jobs:
            rows.append((f"{slug}: default job", "none started (the result was already stored)"))
        for job in jobs:
            rows.append((f"{slug}: {job.title}", _job_line(job)))

    cancel_all_jobs()
    started = [job for slug, params in TRAINING_READERS if slug in live for job in _page_jobs(slug, params)]
    ahead = [job_registry().jobs_ahead(job) for job in started]
    _clear_page_caches()
    from tests.pages import open_page

    opened = time.perf_counter()
    open_page(THIRD_READER)
    third = time.perf_counter() - opened
    still_running = sum(not job.finished for job in started)
    _wait(started)
    for job in started:
        rows.append((f"two readers training: {job.title}", _job_line(job)))
    rows.append(("two readers training: queue position shown at start", ", ".join(map(str, ahead)) or "-"))
    rows.append((f"a third reader opens {THIRD_READER} meanwhile", f"{third:.2f} s server-side "
                 f"({still_running} of {len(started)} training jobs still running when it finished)"))
    return rows
