"""The epoch loop both fine-tuning paths share, and the general path: autograd + Adam on any model.

The loss follows the labels: mean squared error for real-valued targets, cross-entropy (and accuracy) for class
indices (`LOSSES`).

The loop knows no UI: after every epoch it calls `on_progress(Progress)`; a callback that returns False
cancels the run. `cancel()`, when given, is asked before every mini-batch, so a long epoch stops within one
step. A non-finite loss stops the run as `diverged` with the history so far kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..settings.budget import EVAL_CHUNK
from ..settings.results import EpochDynamics, PhaseHistory, Progress, records_dynamics
from ..settings.variants import optimizer_groups
from ..tasks.data import Split, rng
from .optimizers import TORCH_OPTIMIZERS

ProgressCallback = Callable[[Progress], "bool | None"]
# What a model has learned so far (measure/dynamics.Dynamics.record): the model as training left it this epoch.
Recorder = Callable[[nn.Module], "EpochDynamics | None"]  # None: nothing to measure (a diverged model)
# The same for members trained together (Dynamics.record_batch), from each member's changes: per adapted layer
# (s·B': [d_out, k], A': [k, d_in]) with s·B'A' its change from the pretrained W.
BatchRecorder = Callable[[list[dict[str, tuple[torch.Tensor, torch.Tensor]]]], "list[EpochDynamics | None]"]
CancelCheck = Callable[[], bool]
# One epoch of a path: given the epoch's mini-batches (index tensors on the data's device), train on them and
# return the epoch's mean training loss.
EpochStep = Callable[[Iterable[torch.Tensor]], float]


class Cancelled(Exception):
    """Raised between mini-batches when the run's cancel check says stop."""


class Batches:
    """One epoch's shuffled mini-batch indices. The order is drawn at once, on the CPU, so every path and device
    sees the same; the batches are sliced from it lazily (views), because a list of one index tensor per
    mini-batch costs about 600 bytes a batch: gigabytes at batch size 1 and millions of samples."""

    def __init__(self, order: torch.Tensor, batch_size: int) -> None:
        self.order, self.batch_size = order, batch_size  # order: [n], a permutation of range(n)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.order), self.batch_size):
            yield self.order[start:start + self.batch_size]


def batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device | None = None) -> Batches:
    """One epoch's mini-batches (see Batches), their order moved to `device` in one transfer."""
    order = torch.randperm(n, generator=generator)
    return Batches(order if device is None or device.type == "cpu" else order.to(device), batch_size)


def shuffle_generator(seed: int, phase: str) -> torch.Generator:
    return rng(seed, phase)


def checked(items: Iterable[torch.Tensor], cancel: CancelCheck | None) -> Iterator[torch.Tensor]:
    """`items`, raising Cancelled before any of them once `cancel()` is true."""
    for item in items:
        if cancel is not None and cancel():
            raise Cancelled
        yield item


# The loss of a split, by whether its labels are class indices; each takes reduction= like torch's.
LOSSES = {False: F.mse_loss, True: F.cross_entropy}


def classifies(split: Split) -> bool:
    """Whether `split`'s labels are class indices (a classification task) rather than real-valued targets."""
    return not split.y.is_floating_point()


def loss_of(split: Split) -> Callable[..., torch.Tensor]:
    """The loss for `split`'s labels: F.mse_loss or F.cross_entropy."""
    return LOSSES[classifies(split)]


@torch.no_grad()
def held_out_scores(model: nn.Module, split: Split, chunk: int = EVAL_CHUNK,
                    cancel: CancelCheck | None = None) -> tuple[float, float | None]:
    """(the mean loss of `model` on `split`: squared error per output or cross-entropy per sample; for class
    indices the share whose largest output is the true class, else None), from one pass in chunks so large
    held-out sets fit in memory."""
    loss, total, right = loss_of(split), 0.0, 0
    for start in checked(range(0, split.x.shape[0], chunk), cancel):
        out, y = model(split.x[start:start + chunk]), split.y[start:start + chunk]
        total += loss(out, y, reduction="sum").item()
        if classifies(split):  # classes on dimension 1, as F.cross_entropy takes them ([n, C] or [n, C, T])
            right += (out.argmax(1) == y).sum().item()
    return total / split.y.numel(), right / split.y.numel() if classifies(split) else None


def held_out_loss(model: nn.Module, split: Split, chunk: int = EVAL_CHUNK, cancel: CancelCheck | None = None) -> float:
    """The mean loss of `held_out_scores`."""
    return held_out_scores(model, split, chunk, cancel)[0]




@torch.no_grad()
def report(on_progress: ProgressCallback | None, history: PhaseHistory, phase: str, epoch: int, epochs: int,
           train_loss: float, eval_loss: float, eval_accuracy: float | None = None,
           dynamics: EpochDynamics | None = None) -> str | None:
    """Record one epoch (and what was learned, on the epochs that record it) and tell the callback; returns
    'diverged' or 'cancelled' when the run must stop."""
    history.train_loss.append(train_loss)
    history.eval_loss.append(eval_loss)
    if eval_accuracy is not None:
        history.eval_accuracy.append(eval_accuracy)
    if dynamics is not None:
        history.add_dynamics(epoch, dynamics)
    progress = Progress(phase, epoch, epochs, train_loss, eval_loss, eval_accuracy, dynamics)
    if on_progress is not None and on_progress(progress) is False:
        return "cancelled"
    if not (math.isfinite(train_loss) and math.isfinite(eval_loss)):
        return "diverged"
    return None


def members_loop(train_epoch: Callable[[Iterable[torch.Tensor]], list[float]], eval_losses: Callable[[], list[float]],
                 *, members: int, n: int, epochs: int, batch_size: int, seed: int, phase: str, device: torch.device,
                 on_progress: Callable[[int, Progress], bool | None] | None = None, cancel: CancelCheck | None = None,
                 eval_accuracies: Callable[[], list[float]] | None = None,
                 on_stop: Callable[[int, str], None] | None = None,
                 dynamics: Callable[[], list[EpochDynamics | None]] | None = None
                 ) -> tuple[list[str], list[PhaseHistory]]:
    """The one epoch loop: `epochs` epochs of `train_epoch` over the same shuffled batches every path sees, for
    `members` runs trained together (one for a single run), each reporting its own epochs; (statuses, histories).

    `train_epoch` returns each member's mean training loss, `eval_losses` (and for a classification task
    `eval_accuracies`) each member's held-out scores, `dynamics` (where given) what each member has learned, on
    the epochs `records_dynamics` picks. A member that diverges stops (`on_stop(i, status)` lets the path keep
    its factors as they were then) while the others go on; a cancelled one cancels them all."""
    generator = shuffle_generator(seed, phase)
    histories = [PhaseHistory() for _ in range(members)]
    status = ["ok"] * members
    try:
        for epoch in range(1, epochs + 1):
            trains = train_epoch(checked(batches(n, batch_size, generator, device), cancel))
            evals = eval_losses()
            accuracies = eval_accuracies() if eval_accuracies is not None else [None] * members
            recorded = dynamics() if dynamics is not None and records_dynamics(epoch, epochs) else [None] * members
            for i in (i for i in range(members) if status[i] == "ok"):
                tell = None if on_progress is None else (lambda p, i=i: on_progress(i, p))
                stop = report(tell, histories[i], phase, epoch, epochs, trains[i], evals[i], accuracies[i],
                              recorded[i])
                if stop == "cancelled":
                    raise Cancelled
                if stop:
                    status[i] = stop
                    if on_stop is not None:
                        on_stop(i, stop)
            if "ok" not in status:
                break
    except Cancelled:
        status = ["cancelled" if s == "ok" else s for s in status]
    return status, histories


def epoch_loop(train_epoch: EpochStep, eval_loss: Callable[[], float], *, n: int, epochs: int, batch_size: int,
               seed: int, phase: str, device: torch.device, on_progress: ProgressCallback | None = None,
               cancel: CancelCheck | None = None, eval_accuracy: Callable[[], float] | None = None,
               dynamics: Callable[[], EpochDynamics | None] | None = None) -> tuple[str, PhaseHistory]:
    """`members_loop` for one run: (status, history). `eval_accuracy`, for a classification task, is recorded
    after every epoch beside the held-out loss."""
    status, histories = members_loop(
        lambda order: [train_epoch(order)], lambda: [eval_loss()], members=1, n=n, epochs=epochs,
        batch_size=batch_size, seed=seed, phase=phase, device=device,
        on_progress=None if on_progress is None else (lambda _, p: on_progress(p)), cancel=cancel,
        eval_accuracies=None if eval_accuracy is None else (lambda: [eval_accuracy()]),
        dynamics=None if dynamics is None else (lambda: [dynamics()]))
    return status[0], histories[0]


def train(model: nn.Module, train_split: Split, eval_split: Split, *, epochs: int, batch_size: int, lr: float,
          seed: int, phase: str, on_progress: ProgressCallback | None = None,
          cancel: CancelCheck | None = None, lr_ratio: float = 1.0, optimizer: str = "adam",
          record: Recorder | None = None) -> tuple[str, PhaseHistory]:
    """torch's `optimizer` (optimizers.TORCH_OPTIMIZERS) on the model's trainable parameters, the split's loss
    (`loss_of`); LoRA's B factors (and DoRA's magnitudes) at lr * lr_ratio (LoRA+, variants.optimizer_groups).
    `record(model)`, where given, measures what the model has learned on the epochs the loop records.
    Returns (status, history)."""
    opt = TORCH_OPTIMIZERS[optimizer](optimizer_groups(model, lr, lr_ratio), lr=lr)
    n = train_split.x.shape[0]
    loss_fn = loss_of(train_split)
    dtype = next(model.parameters()).dtype

    def train_epoch(order: Iterable[torch.Tensor]) -> float:
        total = torch.zeros((), dtype=dtype, device=train_split.x.device)  # the loss's dtype, not the ids'
        for idx in order:
            loss = loss_fn(model(train_split.x[idx]), train_split.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        return total.item() / n

    scores: list[float | None] = []  # the last evaluation's (loss, accuracy): one pass gives both

    def evaluate() -> float:
        scores[:] = held_out_scores(model, eval_split, cancel=cancel)
        return scores[0]

    # epoch_loop asks for the loss first, then the accuracy of the same evaluation
    return epoch_loop(train_epoch, evaluate, n=n, epochs=epochs, batch_size=batch_size, seed=seed, phase=phase,
                      device=train_split.x.device, on_progress=on_progress, cancel=cancel,
                      eval_accuracy=(lambda: scores[1]) if classifies(eval_split) else None,
                      dynamics=None if record is None else (lambda: record(model)))


def warm_up() -> None:
    """Pay torch's one-off lazy initialisation (about a second before the first optimizer step in a process)
    with a tiny run, so that the first real run does not."""
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    model = nn.Sequential(nn.Linear(2, 2, bias=False, dtype=torch.float32))
    train(model, Split(x, x), Split(x, x), epochs=1, batch_size=8, lr=1e-3, seed=0, phase="pretrain")
