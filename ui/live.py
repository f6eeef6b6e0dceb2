"""Training from a page: every run goes through the server's one scheduler (lora_core/serving/scheduler.py); the page
waits for its job, shows its place in the queue, then its progress bar and a live loss chart.

The session owns the job while it waits. A newer script run of the session (a moved slider, Stop), a closed
tab or a reload releases it, and a job nobody waits for is cancelled within a mini-batch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import uuid

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from lora_core.cache import cache_dir
from lora_core.measure.analysis import shift_singular_values
from lora_core.serving import prewarm as prewarming
from lora_core.serving.prewarm import Prewarmer
from lora_core.serving.room import RoomStore, board_run, default_path
from lora_core.serving.scheduler import Job, Scheduler, default_memory_budget, default_workers
from lora_core.serving.work import WORK, Work, config_of, estimate_work, run_work, work_kind
from lora_core.settings.budget import APP_RUN_MACS, APP_RUN_SECONDS, Estimate, check, within
from lora_core.settings.config import ExperimentConfig
from lora_core.settings.results import PHASES, ExperimentResult, PhaseHistory
from lora_core.sweep import SweepProgress, SweepRequest, SweepResult, member_name, members, sweep_estimate
from lora_core.training.loop import warm_up as warm_up_torch

from . import dynamics_figures, figures, gate, session, training_figures

LOG = logging.getLogger("lora_explorer")  # one line per computed run, for whoever watches the server (load test)
if not LOG.handlers:
    LOG.addHandler(logging.StreamHandler())
    LOG.setLevel(logging.INFO)
POLL_S = 0.1  # how often a waiting page looks at its job (and whether its session is still there)
DRAW_INTERVAL_S = 0.5  # redraw the live chart at most this often: a redraw costs tens of ms of Python


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Torch's first optimizer step in a process costs about a second of lazy imports, Plotly's first figure a
    few tenths: pay both in the background when the first page opens, not when someone presses Train."""
    def tiny_run() -> None:
        warm_up_torch()
        training_figures.empty_figure(1, 1, "digits").to_json()  # Plotly's validators (and subplots) load lazily

    thread = threading.Thread(target=tiny_run, name="lora-explorer-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def scheduler() -> Scheduler:
    """The server's scheduler. It is shut down before Python waits for its threads at exit (SIGTERM included),
    so that a running job stops within a step and the process exits cleanly."""
    def run_logged(work: Work, **kwargs) -> ExperimentResult | SweepResult:
        config = config_of(work)
        LOG.info("lora-explorer: computing a %s (r=%s, seed=%s)", WORK[type(work)].name, config.rank, config.seed)
        return run_work(work, **kwargs)

    sched = Scheduler(run_logged, default_workers(), default_memory_budget(), estimate=estimate_work, kind=work_kind)
    threading._register_atexit(sched.shutdown)  # what concurrent.futures uses for the same reason
    return sched


@st.cache_resource(show_spinner=False)
def prewarm() -> Prewarmer | None:
    """The lessons' and the presets' bases, pretrained in the background when the server's first page opens
    (None when $LORA_EXPLORER_PREWARM is off)."""
    if not prewarming.enabled():
        return None
    return prewarming.start(scheduler(), scheduler().memory_budget)


def prewarm_note() -> str | None:
    """What the background pretraining is doing, for a page to say; None once it is done (or off)."""
    warm = prewarm()
    if warm is None or warm.finished.is_set():
        return None
    return (f"The server is pretraining the lessons' and presets' models in the background ({warm.done} of "
            f"{warm.total} ready), so that they are ready when you press Run; your runs go first.")


def admit(config: ExperimentConfig) -> Estimate:
    """The run's estimate, or ConfigError saying why this server will not run it and what to change. The limits
    go by the raw estimate; its `seconds` are this server's (`expected`)."""
    cost = check(config, max_bytes=scheduler().memory_budget, max_macs=APP_RUN_MACS, max_seconds=APP_RUN_SECONDS)
    return dataclasses.replace(cost, seconds=scheduler().expected(config))


def admit_sweep(req: SweepRequest) -> Estimate:
    """The sweep's estimate (its members added up), or ConfigError: a sweep is one job under one run's limits."""
    fewer = "choose fewer ranks, methods, α or seeds, or smaller settings"
    cost = within(sweep_estimate(req), "this grid", max_bytes=scheduler().memory_budget, max_macs=APP_RUN_MACS,
                  max_seconds=APP_RUN_SECONDS, less_memory=fewer, less_work=fewer)
    return dataclasses.replace(cost, seconds=scheduler().expected(req))


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else "no-session"


def _session_gone(session_id: str) -> bool:
    return Runtime.exists() and session_id != "no-session" and not Runtime.instance().is_active_session(session_id)


@st.cache_resource(show_spinner=False)
def room() -> RoomStore:
    """The room's board, shared by every session of this server (and the server's other processes)."""
    return RoomStore(default_path(cache_dir()))


def my_board_id() -> str:
    """How the board knows this session: a random id of its own, never anything about a person."""
    return session.current().board_id


def _post(work: ExperimentConfig | SweepRequest, result: ExperimentResult | SweepResult, lesson: str) -> None:
    """Put a finished run (or a sweep's members) on the room's board, as this session's."""
    if isinstance(result, SweepResult):
        entries = [board_run(m, "lesson" if lesson else "sweep", lesson) for m in result.members
                   if m.status == "ok"]
    else:
        entries = [board_run(result, "run")] if result.status == "ok" else []
    room().add(my_board_id(), entries, nickname=session.current().nickname)


def train(config: ExperimentConfig, status, chart, dynamics_chart=None) -> tuple[ExperimentResult | None, bool]:
    """Run (or fetch) `config`, drawing its place in the queue and then its progress into `status`, the
    growing loss chart into `chart` and (where given) its directions into `dynamics_chart`, once fine-tuning
    records them. Returns (result, came from the kept results); the result is None when this page stopped
    waiting (a newer script run of the session, a closed tab) or the run failed (raises)."""
    admit(config)
    planned = (config.pretrain_epochs, config.epochs)
    drawn = {"at": 0.0, "n": 0}

    def draw(job: Job, bar, progress: list, run_id: str) -> None:
        last = progress[-1]
        accuracy = "" if last.eval_accuracy is None else f", accuracy {training_figures.percent(last.eval_accuracy)}"
        bar.progress(min(len(progress) / sum(planned), 1.0), text=f"{figures.PHASE_LABELS[last.phase]}: epoch "
                     f"{last.epoch} of {last.epochs}, held-out loss {last.eval_loss:.4g}{accuracy}")
        if time.perf_counter() - drawn["at"] >= DRAW_INTERVAL_S:
            drawn["n"] += 1
            loss, dynamics = _live_figures(job, progress)
            chart.plotly_chart(loss, key=f"live-{run_id}-{drawn['n']}")
            if dynamics_chart is not None and dynamics is not None:
                dynamics_chart.plotly_chart(dynamics, key=f"live-dynamics-{run_id}-{drawn['n']}")
            drawn["at"] = time.perf_counter()

    return _follow(config, status, draw)


def sweep(req: SweepRequest, status, lesson: str = "") -> tuple[SweepResult | None, bool]:
    """Run (or fetch) a sweep, drawing its place and then a progress bar over the whole grid into `status`;
    `lesson` names the lesson it is the runs of (the board files it under it)."""
    admit_sweep(req)
    names = [member_name(method, c.to_dict()) for method, c in members(req)]
    epochs = sum(c.epochs for _, c in members(req))

    def draw(job: Job, bar, progress: list[SweepProgress], run_id: str) -> None:
        # Every fine-tuning epoch is reported once (batched members together, in any order): count them.
        p = progress[-1]
        fine_tuned = sum(q.progress.phase == "finetune" for q in progress)
        bar.progress(min(fine_tuned / epochs, 1.0), text=f"member {p.member + 1} of {p.members} "
                     f"({names[p.member]}): {figures.PHASE_LABELS[p.progress.phase]} epoch {p.progress.epoch} of "
                     f"{p.progress.epochs}")

    return _follow(req, status, draw, lesson)


def _follow(work: ExperimentConfig | SweepRequest, status, draw, lesson: str = "") -> tuple:
    """Submit `work` to the scheduler and follow it: its place in the queue, then `draw(job, bar, progress,
    run_id)` on every update, until it is done. (result or None, came from the kept results)."""
    sched, state, owner = scheduler(), session.current(), _session_id()
    job = sched.submit(work, owner)
    if job.from_cache:
        _post(work, job.result, lesson)
        return job.result, True
    run_id = uuid.uuid4().hex
    state.active_run = run_id
    waited = False
    try:
        with gate.waiting():
            waited = _wait(job, sched, run_id, owner, status, draw)
    finally:
        if not job.done.is_set():
            sched.release(job, owner)
        if state.active_run == run_id:
            state.active_run = None
    status.empty()
    if job.error:
        raise RuntimeError(job.error)
    if not waited or job.result is None or job.result.status == "cancelled":
        return None, False
    _post(work, job.result, lesson)
    return job.result, False


def _wait(job: Job, sched: Scheduler, run_id: str, owner: str, status, draw) -> bool:
    """Draw the job's place, then its progress, until it is done (True) or this page stops waiting (False)."""
    bar = status.progress(0.0, text="starting…")
    shown = None
    while not job.done.wait(POLL_S):
        # Reading session state is where Streamlit stops a superseded script run (it raises there), so a moved
        # slider interrupts this wait at once; a closed tab's session is gone from the runtime.
        if session.current().active_run != run_id or _session_gone(owner):
            return False
        if job.state == "queued":
            ahead, seconds = sched.place(job)
            text = f"waiting for the server: {ahead} run(s) ahead, starting in about {seconds:.0f} s"
            if text != shown:
                bar.progress(0.0, text=text)
                shown = text
            continue
        progress = list(job.progress)
        if not progress or len(progress) == shown:
            continue
        shown = len(progress)
        draw(job, bar, progress, run_id)
    return True


_LIVE_FIGURES: dict[int, tuple[Job, int, object]] = {}  # id(job) -> (job, epochs drawn, figure), recent jobs
_LIVE_LOCK = threading.Lock()


def _live_figures(job: Job, progress: list) -> tuple:
    """The job's loss chart so far and its directions' chart (None before fine-tuning records any), built once
    per update however many sessions wait for the job (a figure costs about 12 ms of Python; ten sessions with
    identical settings used to build ten)."""
    with _LIVE_LOCK:
        kept = _LIVE_FIGURES.get(id(job))
        if kept is None or kept[0] is not job or kept[1] != len(progress):
            planned = (job.config.pretrain_epochs, job.config.epochs)
            history = _history(progress)
            tuning = history["finetune"]
            levels = _shift_spectrum(job.config) if tuning.modes_learned else None  # only a followed shift's
            dynamics = (dynamics_figures.dynamics_figure(tuning, job.config.epochs, levels)
                        if tuning.spectra_epochs else None)
            kept = (job, len(progress), (training_figures.training_figure(history, planned, job.config.task),
                                         dynamics))
            _LIVE_FIGURES.pop(id(job), None)
            _LIVE_FIGURES[id(job)] = kept
            while len(_LIVE_FIGURES) > 8:  # dicts keep insertion order: the oldest job's goes first
                del _LIVE_FIGURES[next(iter(_LIVE_FIGURES))]
        return kept[2]


def _live_figure(job: Job, progress: list):
    """The job's loss chart so far (of `_live_figures`)."""
    return _live_figures(job, progress)[0]


def _history(progress: list) -> dict[str, PhaseHistory]:
    history = {p: PhaseHistory() for p in PHASES}
    for p in progress:
        history[p.phase].train_loss.append(p.train_loss)
        history[p.phase].eval_loss.append(p.eval_loss)
        if p.eval_accuracy is not None:
            history[p.phase].eval_accuracy.append(p.eval_accuracy)
        if p.dynamics is not None:
            history[p.phase].add_dynamics(p.epoch, p.dynamics)
    return history


@functools.lru_cache(maxsize=32)
def _shift_spectrum(config: ExperimentConfig) -> list[float]:
    """The shift's singular values for a live chart's dashed levels: from its factors, or (a full-rank shift,
    whose directions the dynamics follow only up to measure/dynamics.EXACT_MAX_ELEMENTS) a small dense SVD."""
    return shift_singular_values(config)
