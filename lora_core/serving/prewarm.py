"""A room's first click is fast: when the server starts, it pretrains the lessons' and the presets' bases in the
background, so that the first participant of a workshop does not pay for them.

Each base is one job of the server's scheduler at background priority: it runs only while no participant's job
is queued, a participant's submission cancels it at once (within a mini-batch), and it is tried again once the
server is idle. A base whose estimate does not fit the server's budget is skipped. The bases land in the disk
cache (cache.py), so a machine makes each once; the lessons' small bases come before the article's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..experiment import prepared
from ..lessons import LESSONS
from ..settings.budget import Estimate, estimate
from ..settings.config import BASE_FIELDS, PRESETS, ExperimentConfig, preset
from ..settings.speeds import SECONDS_PER_RUN
from ..training.devices import pick_device
from .scheduler import Scheduler

PREWARM_ENV = "LORA_EXPLORER_PREWARM"  # "off" turns it off (the test suite does, but for its own tests)
LOG = logging.getLogger("lora_explorer")
OWNER = "server prewarm"
RETRIES = 20  # a base preempted this often is left to whoever asks for it first


@dataclass(frozen=True)
class Pretraining:
    """Work for the scheduler: pretrain `config`'s base into the cache, nothing else."""

    config: ExperimentConfig


@dataclass
class Pretrained:
    status: str  # "ok", "cancelled" (preempted) or "diverged"


def run_pretraining(work: Pretraining, on_progress=None, cancel=None) -> Pretrained:
    """The scheduler's runner for a Pretraining: the base from the cache, or pretrained and stored there."""
    status, *_ = prepared(work.config, pick_device(work.config.device), on_progress, cancel)
    return Pretrained(status)


def pretraining_estimate(work: Pretraining) -> Estimate:
    """The time of what this job does, the data and the pretraining, so that the server's calibration learns from
    it a ratio a run or a sweep of the task shares (7 December, the default base: measured / estimated 0.28 with
    the whole run's time, 0.45-0.5 with this, as cold runs read; the server's first Compare grid was told 0.6 of
    its time); the memory of the whole run, an upper bound."""
    whole = estimate(work.config)
    return dataclasses.replace(whole, seconds=SECONDS_PER_RUN + whole.pretrain_seconds, finetune_seconds=0.0)


def server_bases() -> list[ExperimentConfig]:
    """The lessons' and the presets' bases, one per distinct base, the quickest first."""
    configs = [lesson.runs().config for lesson in LESSONS.values()] + [preset(name) for name in PRESETS]
    distinct: dict[tuple, ExperimentConfig] = {}
    for config in configs:  # the first config of each base stands for it
        distinct.setdefault(tuple(getattr(config, f) for f in BASE_FIELDS), config)
    return sorted(distinct.values(), key=lambda c: estimate(c).seconds)


def enabled() -> bool:
    return os.environ.get(PREWARM_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


@dataclass
class Prewarmer:
    """Submits each base in turn whenever the scheduler has nothing else to do; `.done`, `.total` and
    `.skipped` say how far it is (a page shows it)."""

    scheduler: Scheduler
    bases: list[ExperimentConfig]
    max_bytes: int
    done: int = 0
    skipped: list[str] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def total(self) -> int:
        return len(self.bases)

    def start(self) -> Prewarmer:
        threading.Thread(target=self._run, name="lora-explorer-prewarm", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            for config in self.bases:
                if self._stop.is_set():
                    return
                self._warm(config)
        finally:
            self.finished.set()

    def _warm(self, config: ExperimentConfig) -> None:
        if estimate(config).bytes > self.max_bytes:
            self.skipped.append(f"{config.task} base: over this server's memory budget")
            return
        for _ in range(RETRIES):
            if not self.scheduler.wait_idle(self._stop):
                return
            job = self.scheduler.submit(Pretraining(config), OWNER, background=True)
            job.done.wait()
            status = "failed" if job.error or job.result is None else job.result.status
            if status == "ok":
                break
            if status != "cancelled":  # preempted: try again; anything else: whoever asks later sees why
                self.skipped.append(f"{config.task} base: {job.error or status}")
                return
        else:
            self.skipped.append(f"{config.task} base: kept giving way to participants' runs")
            return
        self.done += 1
        LOG.info("lora-explorer: prewarmed %s/%s bases", self.done, self.total)


def start(scheduler: Scheduler, max_bytes: int, bases: Iterable[ExperimentConfig] | None = None) -> Prewarmer:
    """Start prewarming `bases` (default: server_bases()) on `scheduler`."""
    return Prewarmer(scheduler, list(server_bases() if bases is None else bases), max_bytes).start()
