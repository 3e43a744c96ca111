"""One gate for the CPU: every model call and every job step passes it, first come first served.

Why a gate: torch on a 2-core server runs fastest when the passes in flight times their torch threads never
exceeds the cores. Without a gate, twenty readers' passes all start at once, the threads fight over two
cores, and everyone waits longest. With it, at most `slots` passes run, each on `threads` torch threads,
and the rest queue in arrival order, so a reader who arrives first is served first.

Order: earliest run first. A page's run usually makes several model calls (a forward pass, then a partial
one, then a check); served strictly call by call, each of them would queue behind every reader who arrived
meanwhile, and a three-call page under a crowd would wait three times as long as a one-call page. So a run
takes a place in line when it starts (`run_order`), and all its calls keep that place: a reader already
being served finishes before newer readers start. Calls outside a run (a job's steps) line up by arrival.

The gate knows nothing of Streamlit. A caller that can tell its reader about the wait registers a notice
for its thread (`waiting_notice`); the gate calls it with the number of passes ahead once the wait has
lasted `notice_after_s`, again whenever that number changes, and with 0 when the pass starts.
"""
from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

THREADS_VARIABLE = "LLM_HANDBOOK_TORCH_THREADS"
NOTICE_AFTER_S = 1.0   # a wait shorter than this is not worth a message
POLL_S = 0.2           # how often a waiting thread re-checks its place, to update its notice

Notice = Callable[[int], None]   # (passes ahead of this reader) -> None; 0 means "your turn now"


def available_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The cores this process may use: its CPU set, capped by a container's CPU quota if it has one.

    A container limited to 2 CPUs on a 16-core host sees 16 cores in its affinity mask; the limit is a
    quota in the cgroup (cgroup v2 `cpu.max`: "<quota> <period>", or "max" for none).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = open(cpu_max).read().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def torch_threads_from_env() -> int | None:
    """The torch thread count a deployment asks for in LLM_HANDBOOK_TORCH_THREADS, if it is a sane number."""
    raw = os.environ.get(THREADS_VARIABLE, "").strip()
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 256 else None


@dataclass(frozen=True)
class GatePlan:
    """How the cores are shared: `slots` passes at once, each on `threads` torch threads."""
    cores: int
    threads: int
    slots: int


def plan_for(cores: int, threads: int | None) -> GatePlan:
    """One torch thread per pass and one pass per core unless the deployment asks otherwise.

    Measured on 2 cores (a 64-token pass): 143 ms on 2 threads against 203 ms on 1, but two passes side by
    side on 1 thread each finish 9.4 passes/s against 7.9. A server is for many readers, so throughput wins;
    a deployment for one reader may set LLM_HANDBOOK_TORCH_THREADS to the core count (then one slot).
    """
    threads = min(max(1, threads or 1), cores)
    return GatePlan(cores=cores, threads=threads, slots=max(1, cores // threads))


class CpuGate:
    """A semaphore served in order of arrival (a run's calls keep the run's place). Re-entrant per thread: a
    holder's nested calls pass straight in."""

    def __init__(self, slots: int, notice_after_s: float = NOTICE_AFTER_S):
        self.slots = max(1, int(slots))
        self._notice_after = notice_after_s
        self._cond = threading.Condition()
        self._queue: list[tuple[int, int]] = []   # a heap of (place in line, ticket) of the waiting calls
        self._running = 0
        self._tickets = itertools.count()          # one sequence for tickets and run places, so they compare
        self._local = threading.local()      # per thread: nesting depth and the registered notice

    # --- what the app reads -------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @contextmanager
    def run_order(self) -> Iterator[None]:
        """Every call this thread makes inside the `with` keeps the place in line taken now (one script run)."""
        previous = getattr(self._local, "place", None)
        self._local.place = next(self._tickets)
        try:
            yield
        finally:
            self._local.place = previous

    @contextmanager
    def waiting_notice(self, notice: Notice) -> Iterator[None]:
        """Let the gate tell this thread's reader about a long wait (see the module docstring)."""
        previous = getattr(self._local, "notice", None)
        self._local.notice = notice
        try:
            yield
        finally:
            self._local.notice = previous

    # --- passing the gate ---------------------------------------------------------------------------------
    @contextmanager
    def slot(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth:   # already inside: one reader's nested model calls must not queue behind themselves
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        self._enter()
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            self._leave()

    def _enter(self) -> None:
        notice: Notice | None = getattr(self._local, "notice", None)
        started = time.monotonic()
        shown = None   # the last number of passes ahead that the notice was given
        with self._cond:
            ticket = next(self._tickets)
            place = getattr(self._local, "place", None)
            entry = (ticket if place is None else place, ticket)
            heapq.heappush(self._queue, entry)
        try:
            while True:
                with self._cond:
                    if self._queue[0] == entry and self._running < self.slots:
                        heapq.heappop(self._queue)
                        self._running += 1
                        self._cond.notify_all()   # the next in line may also fit
                        break
                    self._cond.wait(POLL_S)
                    ahead = sum(1 for other in self._queue if other < entry) + self._running
                # The notice runs outside the lock: it may draw on a page, which takes its own time.
                if notice and ahead and ahead != shown and time.monotonic() - started >= self._notice_after:
                    notice(ahead)
                    shown = ahead
        except BaseException:   # a stopped script must not leave its ticket blocking the queue
            with self._cond:
                if entry in self._queue:
                    self._queue.remove(entry)
                    heapq.heapify(self._queue)
                    self._cond.notify_all()
            raise
        if notice and shown is not None:
            try:
                notice(0)
            except BaseException:   # drawing can raise Streamlit's rerun signal: give the slot back first
                self._leave()
                raise

    def _leave(self) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify_all()


def lowest_priority_for_this_thread() -> bool:
    """Give the calling thread the lowest CPU priority (nice 19), so it runs only on cores readers leave idle.

    Linux schedules threads one by one, each with its own nice value; elsewhere this does nothing.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        return True
    except (AttributeError, OSError):
        return False


_gate: CpuGate | None = None
_plan: GatePlan | None = None
_setup_lock = threading.Lock()


def configure_torch() -> GatePlan:
    """Choose torch threads and gate slots once per process (idempotent)."""
    global _gate, _plan
    with _setup_lock:
        if _plan is None:
            import torch

            _plan = plan_for(available_cores(), torch_threads_from_env())
            torch.set_num_threads(_plan.threads)
            try:   # only possible before torch's inter-op pool starts; harmless to skip afterwards
                torch.set_num_interop_threads(1)
            except RuntimeError:
                pass
            _gate = CpuGate(_plan.slots)
        return _plan


def cpu_gate() -> CpuGate:
    if _gate is None:
        configure_torch()
    return _gate


@contextmanager
def model_work() -> Iterator[None]:
    """Pass the gate and run torch without autograd: the one wrapper around every model computation."""
    import torch

    with cpu_gate().slot(), torch.inference_mode():
        yield
