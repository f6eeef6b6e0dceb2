"""What every task is made of: its seeded random streams and its data, x and y in a training and a held-out split."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Each random draw of a run has its own stream derived from the one seed, so changing one draw (say, the kind of
# shift) never moves another (the original task's data, the model's initial weights, the batch order).
SEED_STREAMS = {"original": 0, "shift": 1, "model": 2, "adapter": 3, "shifted": 4, "pretrain": 1000, "finetune": 2000}


def rng(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one of SEED_STREAMS: drawing on the CPU gives the same numbers on every device."""
    return torch.Generator().manual_seed(seed + SEED_STREAMS[stream])


@dataclass
class Split:
    """x: [n, d_in], y: [n, d_out] (regression) or [n] class indices (classification)."""

    x: torch.Tensor
    y: torch.Tensor


@dataclass
class Task:
    theta: torch.Tensor | None  # [d_in, d_out]; None for a task that is not a linear map (digits.py)
    train: Split
    eval: Split  # held-out samples, never trained on
