"""The fair job queue (sensmap.serving.queue): order, fairness, positions and waits, limits, leaving the queue."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from sensmap.errors import QueueFullError
from sensmap.serving import QueueLimits
from sensmap.serving.queue import FairQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started_between(order: list[tuple[str, str]], session: str) -> list[Counter]:
    """For each job of ``session`` in ``order`` (jobs as they started): how many jobs of each other session started
    between the session's previous job (or the beginning) and this one."""
    out, since = [], Counter()
    for who, _ in order:
        if who == session:
            out.append(since)
            since = Counter()
        else:
            since[who] += 1
    return out


def test_four_sessions_with_two_jobs_each_take_turns():
    queue = FairQueue(QueueLimits(max_running=1))
    blocker = queue.submit("Z", "blocker")
    tickets = [queue.submit(s, f"{s}{i}") for s in "ABCD" for i in (1, 2)]  # each session queues both at once
    assert queue.snapshot()["waiting"] == [(s, f"{s}{i}") for i in (1, 2) for s in "ABCD"]
    blocker.release()
    order = []
    while any(t.state != "done" for t in tickets):
        running = [t for t in tickets if t.state == "running"]
        assert len(running) == 1  # never more than max_running
        order.append((running[0].session, running[0].label))
        running[0].release()
    assert [label for _, label in order] == ["A1", "B1", "C1", "D1", "A2", "B2", "C2", "D2"]
    for session in "ABCD":  # between two turns of a session, no other session gets more than one job
        for counts in started_between(order, session):
            assert max(counts.values(), default=0) <= 1, (session, counts)


def test_a_session_that_arrives_late_waits_behind_at_most_one_job_of_each_other_session():
    queue = FairQueue(QueueLimits(max_running=1, max_waiting_per_session=8))
    first = queue.submit("A", "A1")
    for i in range(2, 6):
        queue.submit("A", f"A{i}")
    for i in range(1, 4):
        queue.submit("B", f"B{i}")
    late = queue.submit("C", "C1")
    waiting = queue.snapshot()["waiting"]
    ahead = Counter(session for session, _ in waiting[: waiting.index(("C", "C1"))])
    assert ahead == {"B": 1}  # and A's running job
    assert late.place().position == 2
    first.release()


def test_threads_of_four_sessions_share_one_place_fairly():
    """Real threads, each session submitting its second job while its first waits or runs."""
    queue = FairQueue(QueueLimits(max_running=1))
    order: list[tuple[str, str]] = []
    gate = threading.Event()
    running = Counter()

    def session(name: str) -> None:
        def job(label: str) -> None:
            with queue.turn(name, label, estimate_s=0.02, poll_s=0.01):
                running["now"] += 1
                assert running["now"] == 1
                order.append((name, label))
                time.sleep(0.02)
                running["now"] -= 1

        second = threading.Thread(target=job, args=(f"{name}2",))
        gate.wait()
        first = threading.Thread(target=job, args=(f"{name}1",))
        first.start()
        time.sleep(0.005)
        second.start()
        first.join()
        second.join()

    with queue.turn("Z", "blocker"):
        threads = [threading.Thread(target=session, args=(s,)) for s in "ABCD"]
        for thread in threads:
            thread.start()
        gate.set()
        time.sleep(0.3)  # all eight jobs are waiting behind the blocker
        assert len(queue.snapshot()["waiting"]) == 8
    for thread in threads:
        thread.join(10)
    assert len(order) == 8
    for name in "ABCD":
        assert [label for who, label in order if who == name] == [f"{name}1", f"{name}2"]
        for counts in started_between(order, name):
            assert max(counts.values(), default=0) <= 1, (name, counts, order)


def test_positions_and_expected_waits_follow_estimates_and_progress():
    clock = FakeClock()
    queue = FairQueue(QueueLimits(max_running=1), clock=clock)
    running = queue.submit("A", "map A", estimate_s=10)
    b, c, d = (queue.submit(s, f"map {s}", estimate_s=e) for s, e in [("B", 4), ("C", 5), ("D", 6)])
    assert running.place() is None and running.state == "running"
    assert [(p.position, p.waiting, p.running, p.eta_s) for p in (b.place(), c.place(), d.place())] == [
        (1, 3, 1, 10.0), (2, 3, 1, 14.0), (3, 3, 1, 19.0)]  # fmt: skip
    clock.now += 6  # six seconds in, the running map reports half its passes: 6 s remain, not 4
    running.set_progress(0.5)
    assert b.place().eta_s == pytest.approx(6.0)
    assert d.place().eta_s == pytest.approx(15.0)
    clock.now += 20  # past its estimate without progress: expected to end now
    running.set_progress(0.0)
    assert b.place().eta_s == 0.0


def test_two_places_run_two_jobs_and_waits_take_the_first_free_place():
    clock = FakeClock()
    queue = FairQueue(QueueLimits(max_running=2), clock=clock)
    first, second = queue.submit("A", "a", estimate_s=8), queue.submit("B", "b", estimate_s=3)
    assert (first.state, second.state) == ("running", "running")
    third, fourth = queue.submit("C", "c", estimate_s=5), queue.submit("D", "d", estimate_s=5)
    assert (third.place().eta_s, fourth.place().eta_s) == (3.0, 8.0)
    second.release()
    assert third.state == "running" and fourth.place().position == 1


def test_stop_while_waiting_removes_the_job():
    queue = FairQueue(QueueLimits(max_running=1))
    blocker = queue.submit("A", "running map")
    seen = []

    class Stop(BaseException):  # like Streamlit's StopException
        pass

    def on_wait(place):
        seen.append(place)
        raise Stop

    with pytest.raises(Stop), queue.turn("B", "waiting map", estimate_s=3, on_wait=on_wait):
        pytest.fail("a stopped job never runs")
    assert seen and seen[0].position == 1 and seen[0].eta_s >= 0
    assert queue.snapshot() == {"running": [("A", "running map")], "waiting": []}
    after = queue.submit("B", "next map")  # B's next job is not pushed back by the job it stopped
    other = queue.submit("C", "c")
    assert queue.snapshot()["waiting"] == [("B", "next map"), ("C", "c")]
    blocker.release()
    assert after.state == "running" and other.state == "waiting"


def test_limits_refuse_with_messages_a_user_can_act_on():
    queue = FairQueue(QueueLimits(max_running=1, max_waiting_per_session=2, max_waiting=3))
    queue.submit("A", "running")
    queue.submit("A", "a2")
    queue.submit("A", "a3")
    with pytest.raises(QueueFullError, match=r"already have 2 job\(s\) waiting.*max_waiting_per_session = 2"):
        queue.submit("A", "a4")
    queue.submit("B", "b1")
    with pytest.raises(QueueFullError, match=r"queue is full \(3 jobs waiting, max_waiting = 3\)"):
        queue.submit("C", "c1")


def test_more_places_start_waiting_jobs_at_once():
    queue = FairQueue(QueueLimits(max_running=1))
    queue.submit("A", "a")
    waiting = queue.submit("B", "b")
    assert waiting.state == "waiting"
    queue.set_max_running(2)
    assert waiting.state == "running" and waiting.wait(0)


def test_checks_that_follow_maps_wait_while_maps_wait_and_take_fair_turns_among_themselves():
    queue = FairQueue(QueueLimits(max_running=1))
    blocker = queue.submit("Z", "map Z")
    checks = [queue.submit(s, f"check {s}", background=True) for s in "AB"]
    maps = [queue.submit(s, f"map {s}") for s in "CDA"]
    assert queue.snapshot()["waiting"] == [("C", "map C"), ("D", "map D"), ("A", "map A"), ("A", "check A"),
                                           ("B", "check B")]  # fmt: skip
    assert checks[0].place().position == 4
    blocker.release()
    order = []
    for _ in range(5):
        (running,) = [t for t in [*checks, *maps] if t.state == "running"]
        order.append(running.label)
        running.release()
    assert order == ["map C", "map D", "map A", "check A", "check B"]
