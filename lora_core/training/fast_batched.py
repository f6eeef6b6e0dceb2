"""A sweep's fast-path members fine-tuned together: every member of one base that fast.py would train alone
(LoRA, rsLoRA, PiSSA, OLoRA, LoRA+) on shared activations, its own products batched with the others'
(fast_stacked.py: the layout and the step).

Shared here: the rows [x | H0] and the base residual E0 of every sample (computed once per sweep, not once per
member) and each step's gathered mini-batch. No op mixes two members' rows, so a member whose loss becomes
non-finite stops as 'diverged' at the epoch its single run stops and poisons no other; its rows are then zeroed
(like padding).

Each member follows its single fast run up to float rounding (products summed in another order, PiSSA's
residual applied as a product instead of folded into W); tests/test_sweep_fast.py checks float64 runs to 1e-9.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from ..settings.config import BYTES_PER_ITEM, ExperimentConfig
from ..settings.dynamics_cost import batch_dynamics_bytes, dynamics_bytes, dynamics_seconds
from ..settings.results import EpochDynamics, Progress
from ..settings.speeds import SECONDS_PER_WEIGHT_STEP
from ..tasks.data import Task
from .batched import Trained
from .devices import cpu_threads
from .fast import EVAL_ROWS, base_activations
from .fast_stacked import GROUP_SECONDS, Stacked, padded_rows, row_macs, rows_of
from .loop import BatchRecorder, CancelCheck, members_loop
from .trainers import choose_path

__all__ = ["PATH", "Stacked", "applies", "batch_bytes", "batch_seconds", "padded_rows", "rows_of", "train_members",
           "wanted"]

PATH = "fast-batched"  # what a member's result says ran
# Both layers' weights from which members always train together (at the article's shapes 10 members took 1.00 s
# together against 1.53 s one by one, 80 steps). Below it only crowded groups do (MEMBERS_PER_GROUP).
MIN_WEIGHTS = 100_000
MEMBERS_PER_GROUP = 3  # below MIN_WEIGHTS, batch only where groups average at least this many members


def wanted(config: ExperimentConfig) -> bool:
    """Whether a member trains here: a LoRA member the fast path takes."""
    return config.method == "lora" and choose_path(config) == "fast"


def applies(configs: list[ExperimentConfig]) -> bool:
    """Whether these members can train together: one base, the same batches, learning rate and dtype, layers
    of at least MIN_WEIGHTS weights or groups of several members each."""
    first = configs[0]
    wide = first.d_in * first.hidden + first.hidden * first.d_out >= MIN_WEIGHTS
    # Small layers: a group's step costs about what one member's fast step costs, so batching pays only where
    # groups hold several members each (the default Compare grid: 24 members in 4 groups, 4.0 s -> 2.0 s; 4
    # members in 4 groups were 1.16x slower batched).
    crowded = len(configs) >= MEMBERS_PER_GROUP * len(set(padded_rows(configs)))
    return len(configs) > 1 and (wide or crowded) and all(
        wanted(c) and c.seed == first.seed and c.batch_size == first.batch_size and c.epochs == first.epochs
        and c.lr == first.lr and c.optimizer == first.optimizer and c.dtype == first.dtype
        and c.device == first.device for c in configs)


def threads(configs: list[ExperimentConfig]) -> int | None:
    """One CPU thread, as a single fast run: a second thread pays only for the largest products, and where the
    other core is busy every op waits for it (the article's 10 members: 10.2 s on two threads against 0.15 s
    on one for the same 8 steps, measured with the machine shared)."""
    return 1


# What a step of the batch costs (measured 7 December, one thread, quiet: 200 us a step for 4 members in one group
# at 64 wide, 507 us for 24 in two, 1.0 ms for 8 members of ranks 1-64 in three, 4.5 ms for 40 in eight, 0.97 ms
# for 10 members at 256 wide; this model reads 183 us, 470 us, 0.80 ms, 3.9 ms and 1.14 ms): the shared ops,
# GROUP_SECONDS per group, and per padded member row its products at BATCH_MACS_PER_SECOND (thin products run well
# below a large one's rate) and Adam over its weights at SECONDS_PER_WEIGHT_STEP each. The same day single runs took
# 1/3.3-1/2.1 of budget.py's estimate (benchmarks/bench_budget.py --quick; 1/2.2-1/1.6 for the fast path's), so
# the batch's time is scaled by SLACK: one calibration ratio (serving/calibration.py) then fits runs and sweeps
# alike, and a server's first sweep is told an honest time.
STEP_SECONDS = 60e-6
BATCH_MACS_PER_SECOND = 30e9
SLACK = 2.2


def batch_seconds(configs: list[ExperimentConfig]) -> float:
    """About how long fine-tuning these members together takes, in budget.py's units (its SECONDS_PER_STEP and
    kin): every step of the batch, and each recorded epoch's dynamics and evaluation per member."""
    c = configs[0]
    rows = padded_rows(configs)
    row = row_macs(c) / BATCH_MACS_PER_SECOND + (c.d_in + 2 * c.hidden + c.d_out) * SECONDS_PER_WEIGHT_STEP
    step = STEP_SECONDS + GROUP_SECONDS * len(set(rows)) + row * sum(rows)
    steps = -(-c.n_samples // c.batch_size) * c.epochs
    return SLACK * (steps * step + c.epochs * sum(dynamics_seconds(m) for m in configs))


def batch_bytes(configs: list[ExperimentConfig]) -> int:
    """Memory of the stacked buffers (fast_stacked.py): parameters, gradients, Adam's three buffers and a rate
    per member row with Pᵀ and Z; six work rows of each batch size (a full and a short last batch, a full and a
    short evaluation chunk); per member its residuals and two R × R products (the shared activations are the
    single run's); and what the dynamics' recorder holds, at an epoch's record too."""
    c = configs[0]
    rows = padded_rows(configs)
    per_row = 8 * (c.d_in + 2 * c.hidden + 2 * c.d_out) + 12 * (c.batch_size + EVAL_ROWS)
    per_member = 2 * (c.batch_size + EVAL_ROWS) * c.d_out
    members = sum(r * per_row + per_member + 2 * r * r for r in rows)
    record = batch_dynamics_bytes(c, [rows_of(m) for m in configs])
    return BYTES_PER_ITEM[c.dtype] * members + dynamics_bytes(c) + record


def train_members(configs: list[ExperimentConfig], base: nn.Module, task: Task,
                  on_progress: Callable[[int, Progress], bool | None] | None = None,
                  cancel: CancelCheck | None = None, recorder: BatchRecorder | None = None) -> list[Trained]:
    """Fine-tune every member of `configs` (for which `applies` holds) from `base` on `task`, together;
    `recorder`, where given, measures what each has learned (loop.BatchRecorder) on the epochs recorded."""
    first, device = configs[0], base.layer1.weight.device
    with torch.no_grad(), cpu_threads(device, threads(configs)):
        w1, w2 = base.layer1.weight.detach(), base.layer2.weight.detach()
        train_xh, train_e = base_activations(task.train, w1, w2)
        eval_xh, eval_e = base_activations(task.eval, w1, w2)
        stack = Stacked(configs, base, w2, steps=-(-train_xh.shape[0] // first.batch_size))

        def dynamics() -> list[EpochDynamics | None]:
            return recorder([stack.changes(i, rows_of(c)) for i, c in enumerate(configs)])

        return _train(configs, stack, (train_xh, train_e, eval_xh, eval_e), on_progress, cancel,
                      None if recorder is None else dynamics)


def _train(configs: list[ExperimentConfig], stack: Stacked, data: tuple[torch.Tensor, ...],
           on_progress: Callable[[int, Progress], bool | None] | None, cancel: CancelCheck | None,
           dynamics: Callable[[], list[EpochDynamics | None]] | None) -> list[Trained]:
    """Every member at once through the one epoch loop (training.members_loop); each member reports its own
    epochs."""
    first = configs[0]
    train_xh, train_e, eval_xh, eval_e = data
    n, d_in, device = train_xh.shape[0], first.d_in, train_xh.device
    stopped: dict[int, dict[str, torch.Tensor]] = {}  # the factors of members that stopped early
    gathered: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    positions = [stack.place[i] for i in range(len(configs))]

    def per_member(by_position: list[float]) -> list[float]:
        return [by_position[p] for p in positions]

    def train_epoch(order: Iterable[torch.Tensor]) -> list[float]:
        steps = 0
        for at, idx in enumerate(order):
            if len(idx) not in gathered:
                gathered[len(idx)] = (train_xh.new_empty(len(idx), train_xh.shape[1]),
                                      train_e.new_empty(len(idx), train_e.shape[1]))
            xh, e = gathered[len(idx)]
            torch.index_select(train_xh, 0, idx, out=xh)
            torch.index_select(train_e, 0, idx, out=e)
            stack.step(xh[:, :d_in], xh[:, d_in:], e, at, first.lr)
            steps = at + 1
        return per_member((stack.squares[:steps].sum(0) / (n * stack.d_out)).tolist())

    def retire(i: int, _: str) -> None:
        stopped[i] = stack.tensors(i, configs[i].rank)
        stack.retire(i)

    start = time.perf_counter()
    status, histories = members_loop(
        train_epoch, lambda: per_member(stack.eval_losses(eval_xh, eval_e).tolist()),
        members=len(configs), n=n, epochs=first.epochs, batch_size=first.batch_size, seed=first.seed,
        phase="finetune", device=device, on_progress=on_progress, cancel=cancel, on_stop=retire,
        dynamics=dynamics)
    share = (time.perf_counter() - start) / len(configs)
    return [Trained(status[i], histories[i], stopped.get(i) or stack.tensors(i, c.rank), share, PATH)
            for i, c in enumerate(configs)]
