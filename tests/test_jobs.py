"""Jobs: keyed by inputs and shared, queued beyond the workers, bounded in what they keep, stoppable."""
import threading
import time

from engine.runtime.jobs import JobRegistry, JobState


def wait_finished(job, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not job.finished:
        assert time.monotonic() < deadline, f"job {job.key} did not finish"
        time.sleep(0.01)
    return job


def test_a_second_request_with_the_same_inputs_joins_the_running_job():
    registry = JobRegistry(workers=1)
    calls, release = [], threading.Event()

    def work(ctx):
        calls.append(1)
        release.wait(5)
        return "measured"

    first = registry.submit(("timing", "hello", 16), work, title="t", budget_s=10)
    second = registry.submit(("timing", "hello", 16), work, title="t", budget_s=10)
    assert second is first
    release.set()
    assert wait_finished(first).result == "measured"
    third = registry.submit(("timing", "hello", 16), work, title="t", budget_s=10)
    assert third is first and calls == [1]        # the stored result, not a new run
    fresh = registry.submit(("timing", "hello", 16), work, title="t", budget_s=10, fresh=True)
    assert fresh is not first and wait_finished(fresh).result == "measured" and calls == [1, 1]


def test_jobs_beyond_the_workers_wait_in_order_and_know_their_place():
    registry = JobRegistry(workers=1)
    release = threading.Event()
    running = registry.submit("a", lambda ctx: release.wait(5), title="a", budget_s=10)
    while running.state is not JobState.RUNNING:
        time.sleep(0.01)
    queued = [registry.submit(k, lambda ctx, k=k: k, title=k, budget_s=10) for k in ("b", "c", "d")]
    assert [j.state for j in queued] == [JobState.QUEUED] * 3
    assert [registry.jobs_ahead(j) for j in queued] == [0, 1, 2]
    release.set()
    for j in queued:
        wait_finished(j)
    assert [j.result for j in queued] == ["b", "c", "d"]
    assert queued[0].started_at <= queued[1].started_at <= queued[2].started_at


def test_the_store_is_bounded_in_entries_and_in_bytes():
    registry = JobRegistry(workers=1, max_results=3, max_bytes=10_000)
    for k in range(5):
        wait_finished(registry.submit(k, lambda ctx: b"x" * 100, title="small", budget_s=5))
    assert registry.stored == 3 and registry.get(0) is None and registry.get(4) is not None
    for k in range(3):
        wait_finished(registry.submit(("big", k), lambda ctx: b"x" * 6_000, title="big", budget_s=5))
    assert registry.stored_bytes <= 10_000
    assert registry.get(("big", 2)) is not None and registry.get(("big", 0)) is None


def test_a_job_stops_at_its_budget_or_when_asked_and_keeps_what_it_did():
    registry = JobRegistry(workers=2)

    def count(ctx):
        n = 0
        while not ctx.should_stop():
            n += 1
            ctx.report(min(n / 1000, 1), f"step {n}")
            time.sleep(0.01)
        return n

    budgeted = registry.submit("budget", count, title="budget", budget_s=0.3)
    asked = registry.submit("asked", count, title="asked", budget_s=60)
    time.sleep(0.1)
    asked.request_stop()
    assert 0 < wait_finished(asked).result < 30
    assert wait_finished(budgeted).elapsed_s < 2 and budgeted.result > 5
    assert budgeted.message.startswith("step ")


def test_a_failing_job_reports_a_short_error_and_the_pool_keeps_working():
    registry = JobRegistry(workers=1)

    def fail(ctx):
        raise ValueError("the prompt is empty")

    failed = wait_finished(registry.submit("bad", fail, title="bad", budget_s=5))
    assert failed.state is JobState.FAILED and failed.error == "ValueError: the prompt is empty"
    assert registry.get("bad") is failed                       # those following it see the error
    retried = wait_finished(registry.submit("bad", lambda ctx: "fine now", title="bad", budget_s=5))
    assert retried is not failed and retried.result == "fine now"   # asking again runs it again
    assert wait_finished(registry.submit("good", lambda ctx: 42, title="good", budget_s=5)).result == 42


def test_cancel_all_stops_running_and_queued_jobs_and_keeps_none_of_their_results():
    registry = JobRegistry(workers=1)

    def count(ctx):
        n = 0
        while not ctx.should_stop():
            n += 1
            time.sleep(0.01)
        return n

    done = wait_finished(registry.submit("done", lambda ctx: "kept", title="done", budget_s=5))
    running = registry.submit("running", count, title="running", budget_s=60)
    queued = registry.submit("queued", count, title="queued", budget_s=60)
    time.sleep(0.05)
    started = time.monotonic()
    assert registry.cancel_all() == 2
    assert time.monotonic() - started < 2 and running.finished and queued.finished
    assert registry.get("running") is None and registry.get("queued") is None
    assert registry.get("done") is done              # a result someone waited for stays
    again = registry.submit("running", count, title="running", budget_s=0.1)
    assert again is not running                      # the next request runs afresh
