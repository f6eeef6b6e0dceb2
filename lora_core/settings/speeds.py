"""How fast one machine does each kind of work: the constants every time estimate is built from (settings/budget.py
for a run, the sweep trainers' batch_seconds for members trained together), measured on this project's 2-core
CPU VM. Only for telling people and for the time limit: the server learns its own ratio to them
(serving/calibration.py). No torch.
"""

from __future__ import annotations

# How long a run takes on a quiet CPU like this project's 2-core VM (the scheduler tells a waiting page its wait
# from it; benchmarks/bench_budget.py prints measured / estimated, see the README): products run at
# MACS_PER_SECOND (the article's pretraining reaches 4.3e10 a second), SVDs about SVD_SLOWDOWN times slower per
# multiply-add; Adam and the other elementwise work touch every trained weight a dozen times per step
# (SECONDS_PER_WEIGHT_STEP, memory-bound); every optimizer step costs a fixed amount of Python and dispatch
# per layer (batch 1, measured: 0.82-0.90 ms an autograd step of the two-layer model, 1.6 ms of the digits'
# three layers, 0.11-0.15 ms a fast-path step), as does every epoch's held-out evaluation and bookkeeping.
MACS_PER_SECOND = 4e10
SVD_SLOWDOWN = 3
SECONDS_PER_WEIGHT_STEP = 5e-9
SECONDS_PER_STEP = {"autograd": 5.5e-4, "fast": 2.0e-4}  # autograd: per layer of the model; fast: per step
SECONDS_PER_EPOCH = 2e-3
# Every run's fixed work beyond its arithmetic: making its data, taking its base from the cache, merging, measuring
# and reporting, many small ops (7 December: 30-40 ms of a 0.1 s run from a kept base; 10-15 ms a sweep member)
SECONDS_PER_RUN = 0.02
SVD_MACS = 4  # svdvals of an m x n matrix costs about SVD_MACS * m * n * min(m, n) multiply-adds


def svd_macs(m: int, n: int) -> float:
    """About what svdvals of an m x n matrix costs, in multiply-adds."""
    return SVD_MACS * m * n * min(m, n)


def seconds_of(macs: float, svd_part: float, weight_steps: float, epochs: int) -> float:
    """The time of `macs` multiply-adds (`svd_part` of them in SVDs), elementwise work over `weight_steps`
    (trained weights times steps) and per-epoch bookkeeping; the caller adds the per-step overhead."""
    return ((macs + (SVD_SLOWDOWN - 1) * svd_part) / MACS_PER_SECOND + weight_steps * SECONDS_PER_WEIGHT_STEP
            + epochs * SECONDS_PER_EPOCH)
