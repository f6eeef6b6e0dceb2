"""The training loop (plain autograd + Adam), device choice, and the epoch-level progress protocol.

The loop knows no UI: after every epoch it calls `on_progress(Progress)`; a callback that returns False
cancels the run. A non-finite loss stops the run as `diverged` with the history so far kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError
from .results import PhaseHistory, Progress
from .tasks import Split, rng

ProgressCallback = Callable[[Progress], "bool | None"]

# Models with fewer weights than this train on one CPU thread: their ops are too small to share, and on a
# 2-core laptop a second thread that waits for a busy core made the default preset 5-25x slower (measured).
ONE_THREAD_BELOW = 100_000



def pick_device(name: str, dtype: str = "float32") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU; an explicit device that is missing raises ConfigError."""
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if has[d])
    if not has.get(name, False):
        raise ConfigError(f"device {name!r} is not available here; allowed: auto, cpu"
                          + "".join(f", {d}" for d in ("cuda", "mps") if has[d]))
    if name == "mps" and dtype == "float64":
        raise ConfigError("Apple MPS has no float64; use dtype float32 or device cpu")
    return torch.device(name)


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run the block on `threads` CPU threads (None: unchanged), restoring the previous count afterwards.
    The count is process-wide, so a concurrent run in another thread sees it too while the block runs."""
    before = torch.get_num_threads()
    change = device.type == "cpu" and threads is not None and threads != before
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


def threads_for(weights: int) -> int | None:
    """The CPU thread count for a model of `weights` weights: one for small models, torch's default otherwise."""
    return 1 if weights < ONE_THREAD_BELOW else None


def warm_up() -> None:
    """Pay torch's one-off lazy initialisation (about a second before the first optimizer step in a process)
    with a tiny run, so that the first real run does not."""
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    model = nn.Sequential(nn.Linear(2, 2, bias=False, dtype=torch.float32))
    train(model, Split(x, x), Split(x, x), epochs=1, batch_size=8, lr=1e-3, seed=0, phase="pretrain")


def describe_device(device: torch.device) -> str:
    """'cpu', or the accelerator's name, e.g. 'cuda (NVIDIA H200)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch's shuffled mini-batch indices, drawn on the CPU so every path and device sees the same order."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def shuffle_generator(seed: int, phase: str) -> torch.Generator:
    return rng(seed, phase)


@torch.no_grad()
def mse(model: nn.Module, split: Split, chunk: int = 8192) -> float:
    """Mean squared error of `model` on `split`, in chunks so large held-out sets fit in memory."""
    total = 0.0
    for start in range(0, split.x.shape[0], chunk):
        out = model(split.x[start:start + chunk])
        total += F.mse_loss(out, split.y[start:start + chunk], reduction="sum").item()
    return total / split.y.numel()


def report(on_progress: ProgressCallback | None, history: PhaseHistory, phase: str, epoch: int, epochs: int,
           train_loss: float, eval_loss: float) -> str | None:
    """Record one epoch and tell the callback; returns 'diverged' or 'cancelled' when the run must stop."""
    history.train_loss.append(train_loss)
    history.eval_loss.append(eval_loss)
    if on_progress is not None and on_progress(Progress(phase, epoch, epochs, train_loss, eval_loss)) is False:
        return "cancelled"
    if not (math.isfinite(train_loss) and math.isfinite(eval_loss)):
        return "diverged"
    return None


def train(model: nn.Module, train_split: Split, eval_split: Split, *, epochs: int, batch_size: int, lr: float,
          seed: int, phase: str, on_progress: ProgressCallback | None = None) -> tuple[str, PhaseHistory]:
    """Adam on the model's trainable parameters, MSE loss. Returns (status, history)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    generator = shuffle_generator(seed, phase)
    history = PhaseHistory()
    n = train_split.x.shape[0]
    for epoch in range(1, epochs + 1):
        total = torch.zeros((), dtype=train_split.x.dtype, device=train_split.x.device)
        for idx in batches(n, batch_size, generator):
            idx = idx.to(train_split.x.device)
            loss = F.mse_loss(model(train_split.x[idx]), train_split.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        stop = report(on_progress, history, phase, epoch, epochs, total.item() / n, mse(model, eval_split))
        if stop:
            return stop, history
    return "ok", history
