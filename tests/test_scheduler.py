"""The server's scheduler: single flight, FIFO order, a shared memory budget, cancellation that frees the
worker and its memory, clean shutdown. Runs with a controllable fake runner and with the real experiment."""

from __future__ import annotations

import threading
import time

import pytest

from lora_core.experiment import run_experiment
from lora_core.serving.scheduler import LONG_RUN_S, Scheduler
from lora_core.settings.budget import Estimate, estimate
from lora_core.settings.config import preset
from lora_core.settings.results import Progress

TINY = dict(d_in=8, hidden=8, d_out=8, n_samples=64, n_eval=16, pretrain_epochs=2, epochs=2, batch_size=16)


class Gate:
    """A fake runner: records the configs it starts and runs each until released (or cancelled)."""

    def __init__(self):
        self.started: list = []
        self.release = threading.Event()

    def __call__(self, config, on_progress=None, cancel=None):
        self.started.append(config)
        while not self.release.wait(0.005):
            if cancel():
                return _result(config, "cancelled")
            on_progress(Progress("pretrain", 1, 1, 1.0, 1.0))
        return _result(config, "ok")


def _result(config, status):
    from types import SimpleNamespace

    return SimpleNamespace(config=config.to_dict(), status=status)


GUARD_S = 60.0  # against a hang only: far more than any wait here takes, even on a busy machine


def wait_for(condition, timeout=GUARD_S):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.fixture
def gate():
    g = Gate()
    sched = Scheduler(g, workers=1, memory_budget=2**40)
    yield g, sched
    g.release.set()
    sched.shutdown()


def test_identical_settings_are_computed_once_and_every_asker_gets_the_result(gate):
    g, sched = gate
    config = preset("default", **TINY)
    jobs = [sched.submit(config, f"session {i}") for i in range(5)]
    assert all(job is jobs[0] for job in jobs) and jobs[0].owners == {f"session {i}" for i in range(5)}
    g.release.set()
    assert jobs[0].done.wait(GUARD_S) and jobs[0].result.status == "ok"
    assert len(g.started) == 1 and sched.stats()["computed"] == 1
    later = sched.submit(config, "late session")  # finished results are kept for everyone
    assert later.from_cache and later.result is jobs[0].result and sched.stats()["computed"] == 1


def test_a_fifo_queue_with_places_and_estimates(gate):
    g, sched = gate
    configs = [preset("default", **TINY, seed=s) for s in range(4)]
    jobs = [sched.submit(c, f"s{i}") for i, c in enumerate(configs)]
    wait_for(lambda: jobs[0].state == "running")
    places = [sched.place(j) for j in jobs]
    assert [p[0] for p in places] == [0, 1, 2, 3]
    assert places[1][1] <= places[2][1] <= places[3][1] and places[3][1] > 0
    g.release.set()
    wait_for(lambda: all(j.done.is_set() for j in jobs))
    assert g.started == configs  # in the order they were asked for


def test_releasing_a_queued_job_drops_it_and_a_shared_one_survives_until_its_last_owner(gate):
    g, sched = gate
    first = sched.submit(preset("default", **TINY, seed=1), "a")
    wait_for(lambda: first.state == "running")
    shared = sched.submit(preset("default", **TINY, seed=2), "a")
    sched.submit(preset("default", **TINY, seed=2), "b")
    dropped = sched.submit(preset("default", **TINY, seed=3), "a")
    sched.release(dropped, "a")
    assert dropped.done.is_set() and dropped.result is None and sched.stats()["queued"] == 1
    sched.release(shared, "a")
    assert not shared.cancelled.is_set()  # b still waits for it
    sched.release_owner("b")  # b closed its tab
    assert shared.done.is_set() and sched.stats()["queued"] == 0
    g.release.set()
    assert first.done.wait(GUARD_S) and len(g.started) == 1


def test_the_memory_budget_is_shared_by_the_running_jobs():
    g = Gate()
    config_a, config_b = preset("default", **TINY, seed=1), preset("default", **TINY, seed=2)
    budget = estimate(config_a).bytes + estimate(config_b).bytes // 2  # room for one, not for both
    sched = Scheduler(g, workers=2, memory_budget=budget)
    try:
        a, b = sched.submit(config_a, "a"), sched.submit(config_b, "b")
        wait_for(lambda: a.state == "running")
        time.sleep(0.1)
        assert b.state == "queued" and sched.stats()["running_bytes"] == estimate(config_a).bytes
        sched.release(a, "a")  # a cancelled job frees its memory, and the next one starts
        wait_for(lambda: b.state == "running")
    finally:
        g.release.set()
        sched.shutdown()


class CountedCancel:
    """run_experiment with its cancel check counted: how many checks answered "stop" (the first one that does
    must end the run, so a cancelled run never takes another mini-batch, however busy the machine)."""

    def __init__(self):
        self.stops = 0

    def __call__(self, config, on_progress=None, cancel=None):
        def check() -> bool:
            stop = cancel()
            self.stops += stop
            return stop

        return run_experiment(config, on_progress=on_progress, cancel=check)


def test_a_cancelled_real_run_stops_before_its_next_step_and_frees_its_worker():
    # Epochs of 20,000 single-row steps (several seconds each): only a check between mini-batches is quick.
    slow = preset("default", d_in=8, hidden=8, d_out=8, n_samples=20_000, n_eval=16, pretrain_epochs=3, epochs=3,
                  batch_size=1, seed=77)
    runner = CountedCancel()
    sched = Scheduler(runner, workers=1, memory_budget=2**34)
    try:
        job = sched.submit(slow, "a")
        nxt = sched.submit(preset("default", **TINY, seed=78), "b")
        wait_for(lambda: job.state == "running")
        time.sleep(0.3)
        start = time.monotonic()
        sched.release(job, "a")
        assert job.done.wait(GUARD_S)
        print(f"a cancelled run stopped {time.monotonic() - start:.3f} s after its release")  # reported only
        assert runner.stops == 1  # it stopped at the first check: no mini-batch after the cancel
        assert job.result.status == "cancelled" and len(job.result.history["pretrain"].train_loss) == 0
        assert nxt.done.wait(GUARD_S) and nxt.result.status == "ok"  # the worker went on to the next job
        assert sched.stats() == {"queued": 0, "running": 0, "computed": 2, "running_bytes": 0}
        assert not sched.submit(slow, "c").from_cache  # a cancelled run is never kept
    finally:
        sched.shutdown()


def test_shutdown_cancels_running_work_and_joins_the_workers():
    slow = preset("default", d_in=8, hidden=8, d_out=8, n_samples=20_000, n_eval=16, pretrain_epochs=3, epochs=3,
                  batch_size=1, seed=79)
    runner = CountedCancel()
    sched = Scheduler(runner, workers=1, memory_budget=2**34)
    job = sched.submit(slow, "a")
    wait_for(lambda: job.state == "running")
    start = time.monotonic()
    sched.shutdown(timeout=GUARD_S)  # returns as soon as the workers have stopped
    print(f"shutdown joined the workers in {time.monotonic() - start:.3f} s")  # reported only
    assert not any(t.is_alive() for t in sched._threads) and job.result.status == "cancelled"
    assert runner.stops == 1


def test_a_run_that_raises_is_reported_and_the_worker_keeps_serving():
    calls = []

    def flaky(config, on_progress=None, cancel=None):
        calls.append(config)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return _result(config, "ok")

    sched = Scheduler(flaky, workers=1, memory_budget=2**30)
    try:
        bad, good = sched.submit(preset("default", **TINY, seed=1), "a"), sched.submit(preset("default", **TINY), "b")
        assert good.done.wait(GUARD_S) and good.result.status == "ok"
        assert bad.error == "RuntimeError: out of memory" and bad.result is None
    finally:
        sched.shutdown()


def test_a_long_job_runs_in_a_lane_of_its_own_and_short_jobs_never_wait_behind_it():
    """One worker per lane: while a long run holds the long lane, short runs still start and finish at once, and
    each lane's waiting pages are told the work ahead of them in their own lane only."""
    let_long_go = threading.Event()

    def runner(config, on_progress=None, cancel=None):
        while config.seed < 10 and not let_long_go.wait(0.005):  # seeds below 10: the long ones
            if cancel():
                return _result(config, "cancelled")
        return _result(config, "ok")

    def seconds(config):  # the long ones are estimated at 1,000 s, the short at 1 s
        return Estimate(1, 1.0, 1000.0 if config.seed < 10 else 1.0, 1)

    sched = Scheduler(runner, workers=1, memory_budget=2**30, estimate=seconds, long_after=60)
    try:
        long_run = sched.submit(preset("default", **TINY, seed=1), "a")
        wait_for(lambda: long_run.state == "running")
        second_long = sched.submit(preset("default", **TINY, seed=2), "b")
        shorts = [sched.submit(preset("default", **TINY, seed=10 + i), f"c{i}") for i in range(3)]
        assert all(job.done.wait(GUARD_S) and job.result.status == "ok" for job in shorts)
        assert long_run.state == "running" and long_run.lane == "long" and shorts[0].lane == "short"
        ahead, wait = sched.place(second_long)
        assert ahead == 1 and 900 < wait <= 1000  # the long run's remaining estimate, nothing of the short lane
        let_long_go.set()
        assert second_long.done.wait(GUARD_S) and sched.stats()["computed"] == 5
    finally:
        let_long_go.set()
        sched.shutdown()


def test_the_lanes_follow_the_estimate_and_the_threshold():
    sched = Scheduler(Gate(), workers=1, memory_budget=2**40, long_after=LONG_RUN_S)
    try:
        assert sched.submit(preset("default", **TINY), "a").lane == "short"
        article = preset("article")
        assert estimate(article).seconds > LONG_RUN_S and sched.submit(article, "a").lane == "long"
    finally:
        sched.shutdown()
