"""What a run is measured by: parameter counts, singular values, and the check that merging is exact."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from .config import BYTES_PER_ITEM, ExperimentConfig
from .results import ExperimentResult, LayerParams, LayerSpectra, ParamCounts
from .tasks import low_rank_factors, rng, shift_delta


def lora_param_count(d_in: int, d_out: int, rank: int) -> int:
    """Trainable parameters of one LoRA adapter: A has r * d_in, B has d_out * r."""
    return (d_in + d_out) * rank


def full_param_count(d_in: int, d_out: int) -> int:
    """Trainable parameters of one full weight matrix (bias-free)."""
    return d_in * d_out


ADAM_MOMENTS = 2  # Adam keeps two running moments (m and v) per trainable parameter


def adam_state_bytes(n_params: int, dtype: str = "float32") -> int:
    """Adam's optimizer state for `n_params` trainable parameters: two moments of the parameter's dtype."""
    return ADAM_MOMENTS * n_params * BYTES_PER_ITEM[dtype]


def dora_magnitude_count(d_out: int) -> int:
    """DoRA's extra trainable parameters on one layer: a magnitude per output row."""
    return d_out


def param_counts(shapes: dict[str, tuple[int, int]], rank: int, use_dora: bool = False) -> ParamCounts:
    """Per-layer and total counts for layers given as {name: (d_in, d_out)}; with DoRA, each layer's adapter
    also trains its magnitude vector."""
    layers = [LayerParams(name, d_in, d_out,
                          lora_param_count(d_in, d_out, rank) + (dora_magnitude_count(d_out) if use_dora else 0),
                          full_param_count(d_in, d_out), dora_magnitude_count(d_out) if use_dora else 0)
              for name, (d_in, d_out) in shapes.items()]
    return ParamCounts(sum(layer.lora for layer in layers), sum(layer.full for layer in layers), layers)


def factored_singular_values(B: torch.Tensor, A: torch.Tensor, scaling: float = 1.0) -> torch.Tensor:
    """Singular values of s * B A for B: [d_out, r], A: [r, d_in], descending, r of them.

    B = Q_b R_b and A.T = Q_a R_a (thin QR), so B A = Q_b (R_b R_a.T) Q_a.T; Q_b and Q_a have orthonormal
    columns, hence B A has the singular values of the r x r core. Cost O((d_in + d_out) r^2), never d_out * d_in.
    """
    _, r_b = torch.linalg.qr(B)
    _, r_a = torch.linalg.qr(A.T)
    return abs(scaling) * torch.linalg.svdvals(r_b @ r_a.T)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of a dense matrix, descending (computed on the CPU in float64 for accuracy)."""
    return torch.linalg.svdvals(matrix.detach().to("cpu", torch.float64))


@torch.no_grad()
def max_abs_diff(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> float:
    """max |model_a(x) - model_b(x)|: zero up to rounding when `model_b` is `model_a` merged."""
    return (model_a(x) - model_b(x)).abs().max().item()


# ---- reading counts and spectra -----------------------------------------------------------------------------

DIRECTION_RTOL = 1e-4  # a singular value below this fraction of the largest counts as zero


def break_even_rank(d_in: int, d_out: int) -> float:
    """The rank at which LoRA's (d_in + d_out) r equals the full d_in d_out: d_in d_out / (d_in + d_out)."""
    return full_param_count(d_in, d_out) / (d_in + d_out)


def direction_count(values: Sequence[float], rtol: float = DIRECTION_RTOL) -> int:
    """How many singular values are non-zero: above `rtol` times the largest."""
    top = max(values, default=0.0)
    return sum(v > rtol * top for v in values) if top > 0 else 0


def cumulative_energy(values: Sequence[float]) -> list[float]:
    """Fraction of the squared Frobenius norm carried by the first k singular values, k = 1, 2, ..."""
    total = sum(v * v for v in values)
    out, running = [], 0.0
    for v in values:
        running += v * v
        out.append(running / total if total > 0 else 0.0)
    return out


def factored_gap(s: LayerSpectra) -> float:
    """Largest difference between ΔW's singular values from the factors and from the merged weights, relative
    to the largest one."""
    top = max(s.delta_merged, default=0.0) or 1.0
    return max((abs(f - m) for f, m in zip(s.delta_factored, s.delta_merged, strict=False)), default=0.0) / top


def shift_singular_values(config: ExperimentConfig) -> list[float]:
    """Singular values of the shift Δθ = θ' - θ of the task, descending, min(d_in, d_out) of them.

    From the shift's structure where it has one, so that no dense SVD is needed: a constant c is one direction
    of size c sqrt(d_in d_out); a low-rank shift comes as factors (QR + s x s SVD); only a full-rank one is dense.
    """
    n = min(config.d_in, config.d_out)
    if config.shift == "constant":
        values = torch.tensor([abs(config.shift_scale) * math.sqrt(config.d_in * config.d_out)], dtype=torch.float64)
    elif config.shift == "low_rank":
        u, v = low_rank_factors(config, rng(config.seed, "shift"), getattr(torch, config.dtype))
        values = factored_singular_values(u.double(), v.double(), config.shift_scale / config.shift_rank**0.5)
    else:
        values = torch.linalg.svdvals(shift_delta(config).to(torch.float64))
    return values.tolist() + [0.0] * (n - len(values))


def loss_improvement(result: ExperimentResult) -> float | None:
    """How many times lower the merged model's loss on shifted data is than the base model's."""
    before, after = result.losses.get("base_on_shifted"), result.losses.get("merged_on_shifted")
    if before is None or after is None or not after > 0:
        return None
    return before / after
