"""Long work as jobs: keyed by their inputs, run by a small pool outside the script run, results kept bounded.

Why jobs: a computation that takes seconds (timings, training, sweeps) cannot live inside a Streamlit script
run. The run would hold the reader's page until it ends, a second reader asking the same thing would start
it again, and a rerun (a moved slider) would abandon it half done. Here:
- a job is keyed by its inputs; asking for a key that is queued or running attaches to that job, and asking
  for a finished one returns it at once (so a share link to a result opens without waiting);
- the pool runs at most as many jobs as the CPU gate has slots; the others wait in arrival order and can
  say how many jobs are ahead of them;
- each job has a time budget and a stop request, both cooperative: the work reads `ctx.should_stop()`;
- finished jobs are kept in a store bounded in entries and in bytes, least recently used out first.

No Streamlit here: the page polls a job's progress through `ui.jobs`.
"""
from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Hashable

log = logging.getLogger("llm_handbook")

MAX_RESULTS = 64
MAX_RESULT_BYTES = 64 * 2**20


class JobState(Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(eq=False)
class Job:
    key: Hashable
    title: str
    budget_s: float
    state: JobState = JobState.QUEUED
    fraction: float = 0.0            # progress, 0 to 1
    message: str = ""
    result: Any = None
    error: str | None = None
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    size_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.FAILED)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the work to end at its next check; what it has done so far becomes the result."""
        self._stop.set()

    @property
    def elapsed_s(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or time.time()) - self.started_at


class JobContext:
    """What the work function sees: report progress, and ask whether it should stop."""

    def __init__(self, job: Job):
        self._job = job

    def report(self, fraction: float, message: str = "") -> None:
        self._job.fraction = min(max(float(fraction), 0.0), 1.0)
        self._job.message = message

    @property
    def remaining_s(self) -> float:
        return max(0.0, self._job.budget_s - self._job.elapsed_s)

    def stop_requested(self) -> bool:
        """The reader asked to stop."""
        return self._job.stop_requested

    def should_stop(self) -> bool:
        """Stop asked for, or the time budget spent."""
        return self._job.stop_requested or self.remaining_s <= 0


def pickled_size(value: Any) -> int:
    """Bytes a result takes, measured by pickling it (what a copy of it would cost)."""
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:   # an unpicklable result still counts as something
        return 1 << 20


class JobRegistry:
    def __init__(self, workers: int, max_results: int = MAX_RESULTS, max_bytes: int = MAX_RESULT_BYTES):
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="job")
        self._lock = threading.Lock()
        self._active: dict[Hashable, Job] = {}                      # queued or running
        self._finished: OrderedDict[Hashable, Job] = OrderedDict()  # the bounded store
        self._queue: list[Job] = []                                 # queued jobs in arrival order
        self.max_results, self.max_bytes = max_results, max_bytes

    def get(self, key: Hashable) -> Job | None:
        with self._lock:
            job = self._active.get(key) or self._finished.get(key)
            if key in self._finished:
                self._finished.move_to_end(key)
            return job

    def submit(self, key: Hashable, work: Callable[[JobContext], Any], *, title: str, budget_s: float,
               fresh: bool = False) -> Job:
        """The job for `key`: the running or stored one if there is one (unless `fresh`), else a new one.

        `fresh` drops a stored result (a reader asked to measure again); a job still running is kept. A job
        that failed is kept only to show its error to those following it; the next request runs it again.
        """
        with self._lock:
            if key in self._active:
                return self._active[key]
            if key in self._finished and not fresh and self._finished[key].state is JobState.DONE:
                self._finished.move_to_end(key)
                return self._finished[key]
            self._finished.pop(key, None)
            job = Job(key=key, title=title, budget_s=float(budget_s))
            self._active[key] = job
            self._queue.append(job)
        self._pool.submit(self._run, job, work)
        return job

    def jobs_ahead(self, job: Job) -> int:
        """How many queued jobs will start before this one (0 once it runs)."""
        with self._lock:
            return self._queue.index(job) if job in self._queue else 0

    def active(self) -> list[Job]:
        """The queued and running jobs, oldest first (a snapshot)."""
        with self._lock:
            return sorted(self._active.values(), key=lambda job: job.submitted_at)

    @property
    def stored_bytes(self) -> int:
        with self._lock:
            return sum(j.size_bytes for j in self._finished.values())

    @property
    def stored(self) -> int:
        with self._lock:
            return len(self._finished)

    def cancel_all(self, timeout_s: float = 30.0) -> int:
        """Stop every queued or running job, wait for them to end, and forget them; returns how many.

        For a process's leftovers (a test whose page started a sweep it never waited for): the jobs hold the
        CPU gate, and what they made is a partial result nobody asked for, so none of it is kept.
        """
        with self._lock:
            jobs = list(self._active.values())
        for job in jobs:
            job.request_stop()
        deadline = time.monotonic() + timeout_s
        for job in jobs:   # queued ones start, see the stop at their first check, and end at once
            while not job.finished and time.monotonic() < deadline:
                time.sleep(0.01)
        with self._lock:
            for job in jobs:
                if self._finished.get(job.key) is job:
                    del self._finished[job.key]
        return len(jobs)

    def _run(self, job: Job, work: Callable[[JobContext], Any]) -> None:
        with self._lock:
            self._queue.remove(job)
        job.started_at = time.time()
        job.state = JobState.RUNNING
        try:
            job.result = work(JobContext(job))
            job.size_bytes = pickled_size(job.result)
            job.state = JobState.DONE
        except Exception as err:   # the reader sees a short message; the log keeps the traceback
            log.exception("job %s failed", job.title)
            job.error = f"{type(err).__name__}: {str(err)[:300]}"
            job.state = JobState.FAILED
        finally:
            job.finished_at = time.time()
            job.fraction = 1.0
            self._store(job)

    def _store(self, job: Job) -> None:
        with self._lock:
            self._active.pop(job.key, None)
            self._finished[job.key] = job
            self._finished.move_to_end(job.key)
            total = sum(j.size_bytes for j in self._finished.values())
            while len(self._finished) > 1 and (len(self._finished) > self.max_results or total > self.max_bytes):
                _, dropped = self._finished.popitem(last=False)
                total -= dropped.size_bytes


_registry: JobRegistry | None = None
_registry_lock = threading.Lock()


def job_registry() -> JobRegistry:
    """The process's one registry: as many workers as the CPU gate has slots."""
    global _registry
    with _registry_lock:
        if _registry is None:
            from engine.runtime.gate import configure_torch

            _registry = JobRegistry(workers=configure_torch().slots)
        return _registry


def cancel_all_jobs() -> int:
    """Stop and forget every queued or running job of the process's registry (none if it was never made)."""
    with _registry_lock:
        registry = _registry
    return registry.cancel_all() if registry is not None else 0
