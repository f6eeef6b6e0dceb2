"""Background pretraining at server start: which bases, the order, a participant's run first (the background
job gives way within a step and is tried again), the budget respected, and the disk cache filled once."""

from __future__ import annotations

import threading

import pytest

from lora_core.experiment import run_experiment
from lora_core.serving import prewarm
from lora_core.serving.prewarm import Pretraining, pretraining_estimate, run_pretraining, server_bases
from lora_core.serving.scheduler import Scheduler
from lora_core.settings.budget import Estimate, estimate
from lora_core.settings.config import BASE_FIELDS, preset
from lora_core.settings.results import Progress
from lora_core.settings.speeds import SECONDS_PER_RUN
from tests.test_scheduler import GUARD_S, TINY, _result, wait_for


def test_the_lessons_and_presets_bases_once_each_the_quickest_first():
    bases = server_bases()
    keys = [tuple(getattr(c, f) for f in BASE_FIELDS) for c in bases]
    assert len(keys) == len(set(keys))
    assert {c.task for c in bases} == {"linear", "digits", "text"}
    seconds = [estimate(c).seconds for c in bases]
    assert seconds == sorted(seconds)
    assert bases[-1].d_in == preset("article").d_in  # the article's big base comes last


def test_prewarming_fills_the_cache_so_the_first_run_reuses_its_base():
    configs = [preset("default", **TINY, seed=4100), preset("digits", hidden=8, pretrain_epochs=2, epochs=1,
                                                            seed=4101)]
    sched = Scheduler(run_pretraining, estimate=pretraining_estimate)
    try:
        warm = prewarm.start(sched, 2**30, configs)
        assert warm.finished.wait(GUARD_S)
        assert (warm.done, warm.total, warm.skipped) == (2, 2, [])
        assert all(run_experiment(c).pretrain_cached for c in configs)
    finally:
        sched.shutdown()


def test_a_base_over_the_budget_is_skipped_and_said_so():
    big = preset("default", **TINY, seed=4200)
    sched = Scheduler(run_pretraining, estimate=pretraining_estimate)
    try:
        warm = prewarm.start(sched, max_bytes=estimate(big).bytes - 1, bases=[big])
        assert warm.finished.wait(GUARD_S)
        assert warm.done == 0 and "over this server's memory budget" in warm.skipped[0]
    finally:
        sched.shutdown()


def test_a_pretraining_is_estimated_at_what_it_does_and_held_to_the_whole_runs_memory():
    """Its time is the data's and the pretraining's (so the calibration's ratio for it is comparable with a run's),
    its memory the whole run's upper bound."""
    for config in (preset("default"), preset("digits"), preset("text")):
        whole, work = estimate(config), pretraining_estimate(Pretraining(config))
        assert work.seconds == SECONDS_PER_RUN + whole.pretrain_seconds < whole.seconds
        assert work.bytes == whole.bytes and work.finetune_seconds == 0.0
    fine_tune_heavy = preset("default", epochs=300)
    assert pretraining_estimate(Pretraining(fine_tune_heavy)).seconds == pytest.approx(
        pretraining_estimate(Pretraining(preset("default"))).seconds)  # fine-tuning epochs are not its work


class Recorder:
    """A fake runner: background pretraining runs until released or cancelled; a participant's run is quick."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.release = threading.Event()

    def __call__(self, work, on_progress=None, cancel=None):
        name = "pretraining" if isinstance(work, Pretraining) else "participant"
        self.events.append((name, "start"))
        while name == "pretraining" and not self.release.wait(0.005):
            if cancel():
                self.events.append((name, "cancelled"))
                return _result(work.config, "cancelled")
            on_progress(Progress("pretrain", 1, 1, 1.0, 1.0))
        self.events.append((name, "done"))
        return _result(work.config if name == "pretraining" else work, "ok")


def test_a_participants_run_goes_first_and_the_background_base_is_tried_again():
    runner = Recorder()
    sched = Scheduler(runner, estimate=lambda work: Estimate(1, 1, 0.1, 1))
    base = preset("default", **TINY, seed=4300)
    try:
        warm = prewarm.start(sched, 2**30, [base])
        wait_for(lambda: ("pretraining", "start") in runner.events)
        job = sched.submit(preset("default", **TINY, seed=4301), "participant")
        assert job.done.wait(GUARD_S) and job.result.status == "ok"
        wait_for(lambda: runner.events.count(("pretraining", "start")) == 2)  # tried again once idle
        runner.release.set()
        assert warm.finished.wait(GUARD_S) and warm.done == 1
        assert runner.events[:4] == [("pretraining", "start"), ("pretraining", "cancelled"), ("participant", "start"),
                                     ("participant", "done")]
    finally:
        runner.release.set()
        sched.shutdown()


def test_background_work_waits_while_a_participants_job_is_queued_or_running():
    runner = Recorder()
    sched = Scheduler(runner, estimate=lambda work: Estimate(1, 1, 0.1, 1))
    gate = threading.Event()

    def slow_participant(work, on_progress=None, cancel=None):
        if isinstance(work, Pretraining):
            return runner(work, on_progress, cancel)
        runner.events.append(("participant", "start"))
        gate.wait(GUARD_S)
        runner.events.append(("participant", "done"))
        return _result(work, "ok")

    sched.run = slow_participant
    try:
        job = sched.submit(preset("default", **TINY, seed=4400), "participant")
        wait_for(lambda: ("participant", "start") in runner.events)
        runner.release.set()
        warm = prewarm.start(sched, 2**30, [preset("default", **TINY, seed=4401)])
        assert not warm.finished.wait(0.3)  # waits for the participant
        gate.set()
        assert job.done.wait(GUARD_S) and warm.finished.wait(GUARD_S)
        assert runner.events.index(("participant", "done")) < runner.events.index(("pretraining", "start"))
    finally:
        gate.set()
        runner.release.set()
        sched.shutdown()
