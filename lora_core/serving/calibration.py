"""How long work really takes on this server against what its estimate said, learned from every finished job and
applied to the next estimates, so that a waiting page, the Compare page and a result say honest times on any
machine. The estimate's constants (settings/budget.py) were measured on one machine in one state; the same runs
measured 1.0-1.6 times faster than estimated on one day and 3.5-7 times on another (benchmarks/bench_budget.py).

Per kind of work, named 'what:task' (a run of a task, with its base kept or not, a sweep of a task, a
pretraining), a running ratio measured / estimated: the geometric mean of the last observations, each weighing
WEIGHT. A kind not seen yet takes its task's ratio (the server pretrains the presets' bases when it starts, so a
task's first run has its pretraining's), else the ratio over all work seen; before anything: 1 (the raw
estimate). Ratios are clamped to BOUNDS, so that one odd job (a run whose process was paused) cannot make every
estimate absurd. No torch, no Streamlit.
"""

from __future__ import annotations

import math
import threading

WEIGHT = 0.5  # an observation's weight in the running ratio: the last few jobs decide it
BOUNDS = (0.02, 50.0)


class Calibration:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # log(measured / estimated), running: per kind, per task ('task:' + the part after the colon), overall ('')
        self._log_ratios: dict[str, float] = {}

    def ratio(self, kind: str) -> float:
        """measured / estimated for `kind` (or its task's, or over all work, or 1 before any)."""
        with self._lock:
            log = next((self._log_ratios[k] for k in (kind, _task(kind), "") if k in self._log_ratios), None)
        return 1.0 if log is None else math.exp(log)

    def seconds(self, kind: str, estimated: float) -> float:
        """The time `estimated` seconds of `kind` take on this server, as far as it has seen."""
        return estimated * self.ratio(kind)

    def observe(self, kind: str, estimated: float, measured: float) -> None:
        """A job of `kind` estimated at `estimated` seconds (raw, uncalibrated) took `measured`."""
        if not (estimated > 0 and measured > 0 and math.isfinite(estimated) and math.isfinite(measured)):
            return
        log = math.log(min(max(measured / estimated, BOUNDS[0]), BOUNDS[1]))
        with self._lock:
            for key in (kind, _task(kind), ""):
                old = self._log_ratios.get(key)
                self._log_ratios[key] = log if old is None else (1 - WEIGHT) * old + WEIGHT * log


def _task(kind: str) -> str:
    """The key of a kind's task: 'run:digits' -> 'task:digits'."""
    return "task:" + kind.partition(":")[2]
