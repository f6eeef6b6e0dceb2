"""The article's regression task, y = x θ, and the shifted task that fine-tuning adapts to."""

from __future__ import annotations

import torch

from ..settings.config import ExperimentConfig
from .data import Split, Task, rng


def shift_matrix(config: ExperimentConfig, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """The change Δθ: [d_in, d_out] added to θ.

    constant: c everywhere, rank 1 (the article's θ + 1). low_rank: c * U V / sqrt(s) with U: [d_in, s],
    V: [s, d_out] standard normal, so entries have variance c^2 like the other kinds. graded: s orthonormal
    directions whose sizes halve (graded_factors), entries of mean square c^2 too. full_rank: c * N(0, 1).
    """
    shape = (config.d_in, config.d_out)
    c = config.shift_scale
    if config.shift == "constant":
        return torch.full(shape, c, dtype=dtype)
    if config.shift == "low_rank":
        u, v = low_rank_factors(config, generator, dtype)
        return c * (u @ v) / config.shift_rank**0.5
    if config.shift == "graded":
        left, right = graded_factors(config, generator, dtype)
        return left @ right
    return c * torch.randn(shape, generator=generator, dtype=dtype)


def graded_factors(config: ExperimentConfig, generator: torch.Generator,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(U Σ: [d_in, s], Vᵀ: [s, d_out]) of a graded shift: U, V orthonormal columns (QR of standard normal
    draws), Σ = σ₁ · (1, 1/2, 1/4, ...), σ₁ chosen so that ‖Δθ‖² = c² d_in d_out (entries of mean square c²)."""
    s = config.shift_rank
    u, _ = torch.linalg.qr(torch.randn(config.d_in, s, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(config.d_out, s, generator=generator, dtype=torch.float64))
    halving = 0.5 ** torch.arange(s, dtype=torch.float64)
    sigma = halving * config.shift_scale * (config.d_in * config.d_out / (halving**2).sum()) ** 0.5
    return (u * sigma).to(dtype), v.T.contiguous().to(dtype)


def shift_factors(config: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(L: [d_in, k], R: [k, d_out]) with L R = Δθ (to rounding) for the shifts that have a structure (constant,
    low_rank, graded), from the shift's own generator; None for a full-rank one."""
    generator, dtype, c = rng(config.seed, "shift"), getattr(torch, config.dtype), config.shift_scale
    if config.shift == "constant":
        return torch.full((config.d_in, 1), c, dtype=dtype), torch.ones(1, config.d_out, dtype=dtype)
    if config.shift == "low_rank":
        u, v = low_rank_factors(config, generator, dtype)
        return u * (c / config.shift_rank**0.5), v
    if config.shift == "graded":
        return graded_factors(config, generator, dtype)
    return None


def low_rank_factors(config: ExperimentConfig, generator: torch.Generator,
                     dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """U: [d_in, s] and V: [s, d_out] of a low_rank shift, standard normal."""
    u = torch.randn(config.d_in, config.shift_rank, generator=generator, dtype=dtype)
    v = torch.randn(config.shift_rank, config.d_out, generator=generator, dtype=dtype)
    return u, v


def shift_delta(config: ExperimentConfig) -> torch.Tensor:
    """The task's shift Δθ: [d_in, d_out], drawn from its own generator so it costs no data to recompute."""
    return shift_matrix(config, rng(config.seed, "shift"), getattr(torch, config.dtype))


def _split(theta: torch.Tensor, n: int, generator: torch.Generator) -> Split:
    x = torch.randn(n, theta.shape[0], generator=generator, dtype=theta.dtype)
    return Split(x, x @ theta)


def make_tasks(config: ExperimentConfig, device: torch.device | str = "cpu") -> tuple[Task, Task]:
    """The original and the shifted task, each with its own training and held-out samples.

    Everything is drawn on the CPU from generators seeded by `config.seed`, so a seed gives the same data on
    every device. The original task depends only on the seed and the sizes, not on the shift, so a cached
    pretrained base stays valid when only the shift changes.
    """
    dtype = getattr(torch, config.dtype)
    g = rng(config.seed, "original")
    theta = torch.randn(config.d_in, config.d_out, generator=g, dtype=dtype)
    original = Task(theta, _split(theta, config.n_samples, g), _split(theta, config.n_eval, g))
    theta2 = theta + shift_delta(config)
    g_shifted = rng(config.seed, "shifted")
    shifted = Task(theta2, _split(theta2, config.n_samples, g_shifted), _split(theta2, config.n_eval, g_shifted))
    return _to(original, device), _to(shifted, device)


def _to(task: Task, device: torch.device | str) -> Task:
    return Task(task.theta.to(device), Split(task.train.x.to(device), task.train.y.to(device)),
                Split(task.eval.x.to(device), task.eval.y.to(device)))
