"""The fair job queue every dashboard session's model work goes through.

One :class:`FairQueue` per server. A session submits a job (a map, a faithfulness or randomisation check) and gets a
:class:`Ticket`; at most ``max_running`` jobs compute at once and the others wait. Waiting jobs are served by start-
time fair queuing with one unit per job: a job's *start tag* is the later of the tag being served now and the end of
its session's previous job, and sessions keep their order within every round. So a session that submits several jobs
gets one turn per round, and a session that arrives waits behind at most one job of every other session, however many
those have queued. Background jobs (work the user did not ask to see first: the check that follows a map) wait
while any foreground job waits, and take fair turns among themselves.

Positions and expected waits come from the jobs' own estimates (seconds, from the dashboard's measured time per
forward pass) and, for running jobs, from their progress. Everything here is thread-safe and pure Python.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import QueueFullError
from .config import QueueLimits

WAITING, RUNNING, DONE, WITHDRAWN = "waiting", "running", "done", "withdrawn"


@dataclass(frozen=True)
class Place:
    """Where a waiting job stands: ``position`` 1 = next to start, of ``waiting`` jobs waiting; ``eta_s`` the
    expected seconds until it starts; ``running`` jobs computing now."""

    position: int
    waiting: int
    running: int
    eta_s: float


class Ticket:
    """One job in the queue. ``session``: who submitted it; ``label``: what it is (shown to operators);
    ``estimate_s``: its expected computing time in seconds."""

    def __init__(
        self, queue: FairQueue, session: str, label: str, estimate_s: float, seq: int, tag: float, background: bool
    ) -> None:
        self._queue = queue
        self.session, self.label, self.estimate_s = session, label, max(0.0, float(estimate_s))
        self.background = background  # waits while any foreground job waits
        self.seq, self.tag = seq, tag  # the order key: (tag, seq); seq is the session's place within a round
        self.state = WAITING
        self.submitted = queue.clock()
        self.started: float | None = None
        self.fraction = 0.0  # of its work done, 0–1, while running

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for this job's turn; True once it may run."""
        return self._queue._wait(self, timeout_s)

    def place(self) -> Place | None:
        """Where the job stands while it waits (None once it runs or left)."""
        return self._queue._place(self)

    def set_progress(self, fraction: float) -> None:
        """Report the share of the job done (0–1), which refines the waits shown to the others."""
        self.fraction = min(1.0, max(0.0, float(fraction)))

    def remaining_s(self, now: float) -> float:
        """Expected seconds until a running job ends: from its progress once it has some, else its estimate."""
        if self.started is None:
            return self.estimate_s
        elapsed = now - self.started
        if self.fraction >= 0.05:
            return max(0.0, elapsed * (1.0 - self.fraction) / self.fraction)
        return max(0.0, self.estimate_s - elapsed)

    def release(self) -> None:
        """The job ended (finished, failed or stopped) or left the queue: free its place for the next one."""
        self._queue._release(self)


class FairQueue:
    """Fair scheduling of model work over sessions with at most ``limits.max_running`` jobs computing at once.

    :meth:`submit` raises :class:`~sensmap.errors.QueueFullError` when the session already has
    ``max_waiting_per_session`` jobs waiting or the queue holds ``max_waiting`` waiting jobs.
    """

    def __init__(self, limits: QueueLimits = QueueLimits(), clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._lock = threading.Condition()
        self._seq = itertools.count()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        # per class (foreground, background): the start tag of the job that started last; per (session, class): the
        # end tag of its last job and the number of the first job of its current backlog
        self._now_tag: dict[bool, float] = {False: 0.0, True: 0.0}
        self._end_tag: dict[tuple[str, bool], float] = {}
        self._origin: dict[tuple[str, bool], int] = {}
        self.history: list[tuple[str, str]] = []  # (session, label) of each job as it started, for operators

    def set_max_running(self, count: int) -> None:
        """Change how many jobs compute at once (e.g. when a Ray cluster goes away); waiting jobs start if allowed."""
        with self._lock:
            self.limits = dataclasses.replace(self.limits, max_running=max(1, int(count)))
            self._grant()

    def submit(self, session: str, label: str, estimate_s: float = 0.0, background: bool = False) -> Ticket:
        """Queue a job of ``session``; it starts at once when a place is free and nobody waits before it.

        ``background`` jobs (work the user did not ask to see first, e.g. the check that follows a map) wait while
        any foreground job waits, and take their turns fairly among themselves."""
        with self._lock:
            mine = sum(t.session == session for t in self._waiting)
            if mine >= self.limits.max_waiting_per_session:
                raise QueueFullError(
                    f"You already have {mine} job(s) waiting, the most this server allows per user "
                    f"(max_waiting_per_session = {self.limits.max_waiting_per_session}). Wait for them to start, "
                    "or stop one, then try again."
                )
            if len(self._waiting) >= self.limits.max_waiting:
                raise QueueFullError(
                    f"The server's queue is full ({len(self._waiting)} jobs waiting, max_waiting = "
                    f"{self.limits.max_waiting}). Try again in a minute."
                )
            seq, key = next(self._seq), (session, background)
            backlog = self._end_tag.get(key, 0.0) > self._now_tag[background]
            tag = self._end_tag[key] if backlog else self._now_tag[background]
            if not backlog:
                self._origin[key] = seq  # sessions keep their order from round to round
            self._end_tag[key] = tag + 1.0
            ticket = Ticket(self, session, label, estimate_s, self._origin[key], tag, background)
            self._waiting.append(ticket)
            self._grant()
            return ticket

    def snapshot(self) -> dict[str, list[tuple[str, str]]]:
        """``{"running": [(session, label)…], "waiting": [(session, label)… in the order they will start]}``."""
        with self._lock:
            return {
                "running": [(t.session, t.label) for t in self._running],
                "waiting": [(t.session, t.label) for t in self._ordered()],
            }

    @contextlib.contextmanager
    def turn(
        self,
        session: str,
        label: str,
        estimate_s: float = 0.0,
        on_wait: Callable[[Place], None] | None = None,
        poll_s: float = 0.5,
        background: bool = False,
    ) -> Iterator[Ticket]:
        """Submit a job, wait for its turn (calling ``on_wait(place)`` about every ``poll_s`` seconds), and run the
        ``with`` block as that job; the place is freed however the block ends, and a job stopped while it waits
        (an exception from ``on_wait``, e.g. the dashboard's Stop) leaves the queue."""
        ticket = self.submit(session, label, estimate_s, background)
        try:
            while not ticket.wait(0.0):
                place = ticket.place()
                if on_wait is not None and place is not None:
                    on_wait(place)
                ticket.wait(poll_s)
            yield ticket
        finally:
            ticket.release()

    # ----------------------------------------------------------------- inside the lock

    def _ordered(self) -> list[Ticket]:
        return sorted(self._waiting, key=lambda t: (t.background, t.tag, t.seq))

    def _grant(self) -> None:
        started = False
        while self._waiting and len(self._running) < self.limits.max_running:
            ticket = self._ordered()[0]
            self._waiting.remove(ticket)
            ticket.state, ticket.started = RUNNING, self.clock()
            self._now_tag[ticket.background] = max(self._now_tag[ticket.background], ticket.tag)
            self._running.append(ticket)
            self.history.append((ticket.session, ticket.label))
            del self.history[:-1000]
            started = True
        if started:
            self._lock.notify_all()

    def _wait(self, ticket: Ticket, timeout_s: float) -> bool:
        with self._lock:
            if ticket.state == WAITING and timeout_s > 0:
                self._lock.wait_for(lambda: ticket.state != WAITING, timeout=timeout_s)
            return ticket.state == RUNNING

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket.state == RUNNING:
                self._running.remove(ticket)
                ticket.state = DONE
            elif ticket.state == WAITING:
                self._waiting.remove(ticket)
                ticket.state = WITHDRAWN
                key = (ticket.session, ticket.background)
                if self._end_tag.get(key) == ticket.tag + 1.0:
                    self._end_tag[key] = ticket.tag  # the session's next job takes the turn it left
            self._grant()

    def _place(self, ticket: Ticket) -> Place | None:
        with self._lock:
            if ticket.state != WAITING:
                return None
            order = self._ordered()
            ahead = order[: order.index(ticket)]
            now = self.clock()
            # the expected start: running jobs end as their progress says, then the jobs ahead take the first
            # free place one after the other
            free = sorted(t.remaining_s(now) for t in self._running)
            free += [0.0] * max(0, self.limits.max_running - len(free))
            for job in ahead:
                free.sort()
                free[0] += job.estimate_s
            return Place(position=len(ahead) + 1, waiting=len(order), running=len(self._running), eta_s=min(free))
