"""One scheduler for all training in a server: a bounded pool of workers, a FIFO queue, a shared memory budget,
and single flight (identical settings running or queued are computed once, and every asker gets the result).

Two lanes keep it fair: a job estimated to take more than `long_after` seconds queues in the long lane, served by
workers of its own, so a participant's long run never holds the short runs of everyone else behind it (they
share the CPU with it instead); each lane is FIFO.

Callers own jobs by a name (a browser session's id): `submit` adds the owner to the job of the same config or
starts a new one; `release` takes the owner away, and a job nobody owns any more is cancelled, queued or
running (a running one stops before its next mini-batch and frees its worker and its memory). Progress is kept
on the job, so any number of owners can draw it at their own pace. No Streamlit here.

A job's `config` is any hashable description of work: an ExperimentConfig (run_experiment) or a sweep's request
(sweep.SweepRequest); `run` and `estimate` are given for it, so single runs and sweeps share one queue.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import torch

from ..settings.budget import Estimate, estimate
from ..settings.config import ExperimentConfig
from ..settings.results import ExperimentResult, Progress
from .calibration import Calibration

Runner = Callable[..., ExperimentResult]  # run_experiment's signature: (config, on_progress=, cancel=)
Estimator = Callable[[Hashable], Estimate]
RESULTS_KEPT = 64  # finished results kept for every caller
# A job whose estimate is over this many seconds runs in the long lane. The default preset's estimate is under
# 1 s, the Compare page's default grid's 20 s (on the digits 60 s: each member counts the pretraining that the
# members share); the article's preset (255 s) goes to the long lane.
LONG_RUN_ENV = "LORA_EXPLORER_LONG_RUN_SECONDS"
LONG_RUN_S = float(os.environ.get(LONG_RUN_ENV, 60))
LANES = ("short", "long")


@dataclass(eq=False)
class Job:
    config: ExperimentConfig
    estimate: Estimate  # raw: what the lanes, the memory budget and the calibration go by
    owners: set[str] = field(default_factory=set)
    expected_seconds: float = 0.0  # the estimate's time on this server (calibrated), for waits and the result
    kind: str = ""  # what the calibration learns from it, named when it was submitted
    state: str = "queued"  # queued -> running -> done
    progress: list[Progress] = field(default_factory=list)  # appended by the worker; read by the owners
    result: ExperimentResult | None = None  # when done: the result (status 'cancelled' if it was)
    error: str | None = None  # when done: why the run failed, if it raised
    from_cache: bool = False  # done at once: a finished result of the same config was kept
    started_at: float | None = None
    lane: str = "short"  # LANES: where it queues and which workers run it
    background: bool = False  # runs only while no other job waits, and gives way to any (prewarm.py)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


def default_workers() -> int:
    """$LORA_EXPLORER_WORKERS, else one per GPU, else one per two CPU cores: the runs are small, threads of one
    process share Python's GIL, and one run at a time finishes every run sooner than many at once."""
    if os.environ.get("LORA_EXPLORER_WORKERS"):
        return max(1, int(os.environ["LORA_EXPLORER_WORKERS"]))
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 2) // 2)


def default_memory_budget() -> int:
    """$LORA_EXPLORER_SERVER_BYTES, else 40 % of this machine's memory, for all running jobs together."""
    if os.environ.get("LORA_EXPLORER_SERVER_BYTES"):
        return int(float(os.environ["LORA_EXPLORER_SERVER_BYTES"]))
    return int(0.4 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class Scheduler:
    def __init__(self, run: Runner, workers: int = 1, memory_budget: int = 8 * 2**30,
                 estimate: Estimator = estimate, long_workers: int = 1, long_after: float = LONG_RUN_S,
                 kind: Callable[[Hashable], str] = lambda work: type(work).__name__,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`kind(work)` names the kind of work for the calibration (which learns each kind's measured /
        estimated seconds); `clock` measures jobs (a test's own clock)."""
        self.run, self.workers, self.memory_budget, self.estimate = run, workers, memory_budget, estimate
        self.long_after, self.kind, self.clock = long_after, kind, clock
        self.calibration = Calibration()
        self._lane_workers = {"short": workers, "long": long_workers}
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Job]] = {lane: deque() for lane in LANES}
        self._background: deque[Job] = deque()  # taken by the short lane's workers when nothing else waits
        self._live: dict[ExperimentConfig, Job] = {}  # queued or running, not cancelled: what single flight joins
        self._running: set[Job] = set()
        self._results: OrderedDict[ExperimentConfig, ExperimentResult] = OrderedDict()
        self._closing = False
        self.computed = 0  # runs actually started (not joined, not from the kept results)
        self._threads = [threading.Thread(target=self._work, args=(lane,), name=f"lora-explorer-{lane}-worker-{i}",
                                          daemon=False)
                         for lane in LANES for i in range(self._lane_workers[lane])]
        for thread in self._threads:
            thread.start()

    # ---- callers ----------------------------------------------------------------------------------------------

    def submit(self, config: ExperimentConfig, owner: str, background: bool = False) -> Job:
        """The job computing `config`, with `owner` among its owners: a kept result, a live job, or a new one.
        A `background` job waits until no other job is queued, and any other job's arrival cancels it."""
        with self._lock:
            if config in self._results:
                self._results.move_to_end(config)
                job = Job(config, self.estimate(config), {owner}, "done", result=self._results[config],
                          from_cache=True)
                job.done.set()
                return job
            job = self._live.get(config)
            if job is None:
                cost = self.estimate(config)
                lane = "short" if background or cost.seconds <= self.long_after else "long"
                kind = self.kind(config)
                job = Job(config, cost, lane=lane, background=background, kind=kind,
                          expected_seconds=self.calibration.seconds(kind, cost.seconds))
                self._live[config] = job
                (self._background if background else self._queues[lane]).append(job)
                self._lock.notify_all()
            if not background:  # a participant's run goes first: background work gives way within a step
                for running in self._running:
                    if running.background:
                        running.cancelled.set()
                        self._live.pop(running.config, None)
            job.owners.add(owner)
            return job

    def release(self, job: Job, owner: str) -> None:
        """`owner` no longer waits for `job`; a job that nobody waits for is cancelled."""
        with self._lock:
            job.owners.discard(owner)
            if job.owners or job.done.is_set():
                return
            job.cancelled.set()
            self._live.pop(job.config, None)
            if job.state == "queued":
                (self._background if job.background else self._queues[job.lane]).remove(job)
                job.state = "done"
                job.done.set()
            self._lock.notify_all()

    def release_owner(self, owner: str) -> None:
        """Release every job of `owner` (a closed tab)."""
        with self._lock:
            jobs = [j for j in (*self._queued(), *self._running) if owner in j.owners]
        for job in jobs:
            self.release(job, owner)

    def place(self, job: Job) -> tuple[int, float]:
        """(jobs ahead of `job` in its lane, running ones included; about how many seconds until it starts)."""
        with self._lock:
            if job.state != "queued":
                return 0, 0.0
            queue = self._queues[job.lane]
            ahead = list(queue)[:queue.index(job)] if job in queue else []
            running = [j for j in self._running if j.lane == job.lane]
            now = self.clock()
            left = sum(max(j.expected_seconds - _ran(j, now), 0.0) for j in running)
            work = left + sum(j.expected_seconds for j in ahead)
            return len(ahead) + len(running), work / self._lane_workers[job.lane]

    def wait_idle(self, stop: threading.Event, poll: float = 0.2) -> bool:
        """Block until no job but background ones is queued or running; False if the scheduler or `stop` closes
        first."""
        with self._lock:
            while not (self._closing or stop.is_set()):
                if not any(not j.background for j in (*self._queued(), *self._running)):
                    return True
                self._lock.wait(poll)
        return False

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"queued": len(self._queued()), "running": len(self._running), "computed": self.computed,
                    "running_bytes": self._running_bytes()}

    def shutdown(self, timeout: float = 1.5) -> None:
        """Cancel every job and wait up to `timeout` seconds for the workers to stop (each within a step)."""
        with self._lock:
            self._closing = True
            for job in (*self._queued(), *self._running):
                job.cancelled.set()
            self._lock.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    # ---- workers ----------------------------------------------------------------------------------------------

    def _queued(self) -> list[Job]:
        """Every queued job, both lanes and the background (call with the lock held)."""
        return [job for lane in LANES for job in self._queues[lane]] + list(self._background)

    def _next(self, lane: str) -> Job | None:
        """The head of `lane`'s queue once it fits in the memory left (strict FIFO within the lane: nobody
        overtakes it), or None to stop."""
        queue = self._queues[lane]
        with self._lock:
            while True:
                if self._closing:
                    return None
                if not queue and lane == "short" and self._background and not self._queues["long"]:
                    queue = self._background  # nothing else waits: background work may start
                if queue:
                    head = queue[0]
                    if not self._running or self._running_bytes() + head.estimate.bytes <= self.memory_budget:
                        queue.popleft()
                        head.state, head.started_at = "running", self.clock()
                        self._running.add(head)
                        self.computed += 1
                        return head
                queue = self._queues[lane]
                self._lock.wait()

    def _calibrate(self, job: Job, result) -> None:
        """Keep what the job's estimate said and how long it took in its result, and learn from it."""
        measured = _ran(job, self.clock())
        if job.expected_seconds > 0:
            result.estimate = {"seconds": job.expected_seconds, "ratio": measured / job.expected_seconds}
        self.calibration.observe(job.kind, job.estimate.seconds, measured)  # as it was before it ran

    def expected(self, work: Hashable) -> float:
        """The seconds `work` would take on this server (its estimate, calibrated)."""
        return self.calibration.seconds(self.kind(work), self.estimate(work).seconds)

    def _running_bytes(self) -> int:
        """The memory the running jobs' estimates add up to (call with the lock held)."""
        return sum(j.estimate.bytes for j in self._running)

    def _work(self, lane: str) -> None:
        while (job := self._next(lane)) is not None:
            def on_progress(p: Progress, job: Job = job) -> bool:
                job.progress.append(p)
                return not job.cancelled.is_set()

            try:
                result = self.run(job.config, on_progress=on_progress, cancel=job.cancelled.is_set)
            except Exception as error:  # the owners show it; the server keeps serving
                result, job.error = None, f"{type(error).__name__}: {error}"
            if result is not None and result.status == "ok":
                self._calibrate(job, result)
            with self._lock:
                self._running.discard(job)
                if self._live.get(job.config) is job:
                    del self._live[job.config]
                if result is not None and result.status != "cancelled":
                    self._results[job.config] = result
                    while len(self._results) > RESULTS_KEPT:
                        self._results.popitem(last=False)
                job.result, job.state = result, "done"
                job.done.set()
                self._lock.notify_all()


def _ran(job: Job, now: float) -> float:
    """How long `job` has been running at `now` (0 before it starts)."""
    return 0.0 if job.started_at is None else now - job.started_at
