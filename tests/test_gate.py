"""The CPU gate: never more passes at once than slots, first come first served, a notice for long waits."""
import threading
import time

import pytest

from engine.runtime.gate import CpuGate, plan_for


@pytest.mark.parametrize("cores, asked, threads, slots", [(2, None, 1, 2), (2, 2, 2, 1), (8, 2, 2, 4),
                                                          (2, 64, 2, 1), (1, None, 1, 1)])
def test_threads_times_slots_never_exceed_the_cores(cores, asked, threads, slots):
    plan = plan_for(cores, asked)
    assert (plan.threads, plan.slots) == (threads, slots)
    assert plan.threads * plan.slots <= cores


def test_no_more_than_slots_run_at_once_and_arrivals_are_served_in_order():
    gate = CpuGate(slots=2)
    running, most, started = [0], [0], []
    lock = threading.Lock()

    def work(n):
        with gate.slot():
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
                started.append(n)
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = []
    for n in range(8):
        t = threading.Thread(target=work, args=(n,))
        t.start()
        threads.append(t)
        time.sleep(0.005)   # arrive one after another
    for t in threads:
        t.join(5)
    assert most[0] == 2
    assert started == sorted(started)
    assert gate.running == 0 and gate.waiting == 0


def test_a_holder_calling_the_model_again_does_not_queue_behind_itself():
    gate = CpuGate(slots=1)
    done = threading.Event()

    def nested():
        with gate.slot(), gate.slot(), gate.slot():
            done.set()

    t = threading.Thread(target=nested)
    t.start()
    t.join(2)
    assert done.is_set() and gate.running == 0


def held_elsewhere(gate: CpuGate) -> tuple[threading.Thread, threading.Event]:
    """Another thread takes the gate's one slot and keeps it until the returned event is set."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        with gate.slot():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(2)
    return holder, release


def test_a_long_wait_is_announced_with_the_passes_ahead_then_cleared():
    gate = CpuGate(slots=1, notice_after_s=0.1)
    heard = []
    holder, release = held_elsewhere(gate)
    threading.Timer(0.6, release.set).start()
    with gate.waiting_notice(heard.append), gate.slot():
        pass
    holder.join(2)
    assert heard[0] == 1 and heard[-1] == 0


def test_a_short_wait_says_nothing():
    gate = CpuGate(slots=1, notice_after_s=5)
    heard = []
    with gate.waiting_notice(heard.append), gate.slot():
        pass
    assert heard == []


def test_a_waiter_that_is_stopped_leaves_the_queue():
    gate = CpuGate(slots=1)
    holder, release = held_elsewhere(gate)

    class Stop(BaseException):
        pass

    def stop_waiting(ahead):
        raise Stop

    gate._notice_after = 0.05
    with pytest.raises(Stop), gate.waiting_notice(stop_waiting), gate.slot():
        pass
    assert gate.waiting == 0
    release.set()
    holder.join(2)
    with gate.slot():   # the gate still works
        assert gate.running == 1


def test_a_container_cpu_quota_caps_the_cores(tmp_path):
    from engine.runtime.gate import available_cores

    quota = tmp_path / "cpu.max"
    unlimited = available_cores(str(tmp_path / "missing"))
    quota.write_text("150000 100000\n")              # 1.5 CPUs: two threads can use them
    assert available_cores(str(quota)) == min(2, unlimited)
    quota.write_text("100000 100000\n")              # 1 CPU
    assert available_cores(str(quota)) == 1
    quota.write_text("max 100000\n")                 # no quota: the CPU set decides
    assert available_cores(str(quota)) == unlimited


def test_a_run_already_being_served_goes_before_runs_that_arrived_after_it():
    """Run A makes two calls; runs B and C arrive between them: A's second call is served before B and C."""
    gate = CpuGate(slots=1)
    order = []
    first_done, others_waiting, holder_release = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with gate.slot():
            holder_release.wait(5)

    def run_a():
        with gate.run_order():
            with gate.slot():
                order.append("A1")
            first_done.set()
            others_waiting.wait(5)
            with gate.slot():
                order.append("A2")

    def run_other(name):
        with gate.run_order(), gate.slot():
            order.append(name)

    a = threading.Thread(target=run_a)
    a.start()
    first_done.wait(2)
    holder = threading.Thread(target=hold)   # keeps the gate busy while the others line up
    holder.start()
    time.sleep(0.05)
    others = [threading.Thread(target=run_other, args=(n,)) for n in ("B", "C")]
    for t in others:
        t.start()
        time.sleep(0.05)
    others_waiting.set()
    time.sleep(0.1)      # A's second call is now in line too, behind B and C by arrival
    holder_release.set()
    for t in [a, holder, *others]:
        t.join(5)
    assert order == ["A1", "A2", "B", "C"]


def test_a_background_thread_can_step_aside_for_readers():
    import os

    from engine.runtime.gate import lowest_priority_for_this_thread

    result = {}

    def background():
        result["ok"] = lowest_priority_for_this_thread()
        result["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=background)
    t.start()
    t.join(2)
    assert result == {"ok": True, "nice": 19}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != 19   # the caller's own is unchanged


def test_a_reader_stopped_while_told_their_turn_has_come_gives_the_slot_back():
    """Clearing the notice draws on the page, where Streamlit may raise its rerun signal (the reader moved a
    slider): the slot just taken must not be lost, or the server would run out of slots."""
    gate = CpuGate(slots=1, notice_after_s=0.05)
    holder, release = held_elsewhere(gate)

    class Rerun(BaseException):
        pass

    def notice(ahead):
        if ahead == 0:
            raise Rerun

    threading.Timer(0.3, release.set).start()
    with pytest.raises(Rerun), gate.waiting_notice(notice), gate.slot():
        pass
    holder.join(2)
    assert gate.running == 0 and gate.waiting == 0
