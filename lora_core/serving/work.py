"""The kinds of work a server's one scheduler runs, in one table: a single run, a sweep, a background
pretraining; what each is called (the log, the calibration's kinds), how to run it and how to estimate it (a
base already kept costs a run or a sweep nothing to pretrain). No Streamlit: the app and the benchmarks share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..experiment import base_cached, run_experiment
from ..settings.budget import Estimate, estimate
from ..settings.config import ExperimentConfig
from ..sweep import SweepRequest, run_request, sweep_estimate
from .prewarm import Pretraining, pretraining_estimate, run_pretraining

Work = ExperimentConfig | SweepRequest | Pretraining


@dataclass(frozen=True)
class WorkKind:
    name: str  # "run", "sweep", "pretraining"
    run: Callable[..., Any]  # (work, on_progress=, cancel=) -> a result
    estimate: Callable[[Any], Estimate]


WORK: dict[type, WorkKind] = {
    ExperimentConfig: WorkKind("run", run_experiment, lambda c: estimate(c, base_cached=base_cached(c))),
    SweepRequest: WorkKind("sweep", run_request, lambda req: sweep_estimate(req, cached=base_cached)),
    Pretraining: WorkKind("pretraining", run_pretraining, pretraining_estimate),
}


def config_of(work: Work) -> ExperimentConfig:
    """The configuration a piece of work is about (a sweep's or a pretraining's base configuration)."""
    return work if isinstance(work, ExperimentConfig) else work.config


def work_kind(work: Work) -> str:
    """What the scheduler's calibration learns each ratio for: the kind of work and its task ('run:digits'; a run
    or a sweep whose bases are all kept already is a kind of its own, 'run, base kept:digits': its time is all
    fine-tuning and measuring, and its measured / estimated differs from a cold one's)."""
    name = WORK[type(work)].name
    if _bases_kept(work):
        name += ", base kept"
    return f"{name}:{config_of(work).task}"


def _bases_kept(work: Work) -> bool:
    if isinstance(work, ExperimentConfig):
        return base_cached(work)
    if isinstance(work, SweepRequest):
        return all(base_cached(work.config.replace(seed=seed)) for seed in work.seeds)
    return False


def run_work(work: Work, **kwargs: Any) -> Any:
    return WORK[type(work)].run(work, **kwargs)


def estimate_work(work: Work) -> Estimate:
    return WORK[type(work)].estimate(work)
