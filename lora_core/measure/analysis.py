"""What a run is measured by: parameter counts, singular values, and the check that merging is exact."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ..settings.config import BYTES_PER_ITEM, ExperimentConfig
from ..settings.results import ExperimentResult, LayerParams, LayerSpectra, ParamCounts
from ..settings.task_specs import rank_limit
from ..settings.variants import DoRA, active
from ..tasks.linear import shift_delta, shift_factors
from ..tasks.registry import kind
from . import svd_memo


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


def param_counts(shapes: dict[str, tuple[int, int]], rank: int, use_dora: bool = False,
                 targets: tuple[str, ...] | None = None, biases: bool = False,
                 extra: Callable[[int, int], int] | None = None, other: int = 0) -> ParamCounts:
    """Per-layer and total counts for layers given as {name: (d_in, d_out)}, an adapter on each of `targets` (all
    layers when None); each adapter also trains `extra(d_in, d_out)` numbers beyond A and B (its variants':
    with `use_dora`, DoRA's magnitude vector). With `biases`, every layer has one, which full fine-tuning trains
    too. `other` counts the model's parameters outside its linear layers (the text model's embeddings and
    norms), which full fine-tuning trains as well."""
    extra = extra or (lambda d_in, d_out: DoRA().extra_trainable(d_in, d_out) if use_dora else 0)
    layers = []
    for name, (d_in, d_out) in shapes.items():
        adapted = targets is None or name in targets
        magnitude = extra(d_in, d_out) if adapted else 0
        lora = lora_param_count(d_in, d_out, rank) + magnitude if adapted else 0
        bias = d_out if biases else 0
        layers.append(LayerParams(name, d_in, d_out, lora, full_param_count(d_in, d_out) + bias, magnitude, bias))
    return ParamCounts(sum(layer.lora for layer in layers), sum(layer.full for layer in layers) + other, layers)


def config_param_counts(config: ExperimentConfig) -> ParamCounts:
    """`param_counts` of a config's model: every layer, adapters on the layers its task adapts."""
    task = kind(config)
    in_use = active(config)
    return param_counts(task.layer_shapes(config), config.rank, targets=task.targets(config), biases=task.biases,
                        extra=lambda d_in, d_out: sum(v.extra_trainable(d_in, d_out) for v in in_use),
                        other=task.other_params(config))


def fitting_rank(config: ExperimentConfig, budget: int) -> int | None:
    """The largest rank at which `config`'s adapter trains at most `budget` parameters (up to the rank its layers
    allow), or None when even r = 1 trains more: what a fixed parameter budget buys each placement."""
    fits = [r for r in range(1, rank_limit(config) + 1)
            if config_param_counts(config.replace(rank=r)).lora_trainable <= budget]
    return max(fits) if fits else None


def factored_singular_values(B: torch.Tensor, A: torch.Tensor, scaling: float = 1.0) -> torch.Tensor:
    """Singular values of s * B A for B: [d_out, r], A: [r, d_in], descending, r of them (or of a batch: B:
    [M, d_out, r], A: [M, r, d_in] -> [M, r]).

    B = Q_b R_b and A.T = Q_a R_a (thin QR), so B A = Q_b (R_b R_a.T) Q_a.T; Q_b and Q_a have orthonormal
    columns, hence B A has the singular values of the r x r core. Cost O((d_in + d_out) r^2), never d_out * d_in.
    """
    _, r_b = torch.linalg.qr(B)
    _, r_a = torch.linalg.qr(A.mT)
    return abs(scaling) * torch.linalg.svdvals(r_b @ r_a.mT)


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of a dense matrix, descending (computed on the CPU in float64 for accuracy)."""
    return svd_memo.svdvals(matrix.detach().to("cpu", torch.float64))  # a matrix seen before costs a digest


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
    factors = shift_factors(config)
    if config.shift == "constant":
        values = torch.tensor([abs(config.shift_scale) * math.sqrt(config.d_in * config.d_out)], dtype=torch.float64)
    elif factors is not None:
        values = factored_singular_values(factors[0].double(), factors[1].double())
    else:
        values = singular_values(shift_delta(config))
    return values.tolist() + [0.0] * (n - len(values))


def loss_improvement(result: ExperimentResult) -> float | None:
    """How many times lower the merged model's loss on shifted data is than the base model's."""
    before, after = result.losses.get("base_on_shifted"), result.losses.get("merged_on_shifted")
    if before is None or after is None or not after > 0:
        return None
    return before / after


# ---- what a method could reach, what it changed (the Compare page's analyses) ----------------------------------

def end_to_end_error(weight1: torch.Tensor, weight2: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """E = θ'ᵀ − W2·W1: [d_out, d_in], what the model's map still misses of the target map (float64).

    With x ~ N(0, I) and y = x θ', the model's expected loss is ‖E‖²_F / d_out (tasks.py has no noise)."""
    w1, w2, t = (m.detach().to("cpu", torch.float64) for m in (weight1, weight2, theta))
    return t.T - w2 @ w1


def loss_floor(error_values: Sequence[float], directions: int | None, d_out: int) -> float | None:
    """The lowest expected loss of a change of the map by at most `directions` directions (Eckart–Young): the
    energy of E's singular values beyond the first `directions`, over d_out. None when there is no bound."""
    if directions is None:
        return None
    return sum(v * v for v in list(error_values)[directions:]) / d_out


def floor_noise(error_values: Sequence[float], directions: int, d_out: int, n_eval: int) -> float:
    """One standard deviation of the held-out loss at the floor: ‖F x‖² for x ~ N(0, I) has variance
    2 Σ σ⁴ of F's singular values, here the tail beyond `directions`, averaged over n_eval rows."""
    tail = list(error_values)[directions:]
    return math.sqrt(2 * sum(v ** 4 for v in tail) / n_eval) / d_out


def amplification_factor(delta: torch.Tensor, weight: torch.Tensor, rank: int) -> float:
    """Hu et al. 2021 §7.3: ‖ΔW‖_F / ‖Uᵀ W V‖_F with U: [d_out, r], V: [d_in, r] the top-r singular directions
    of ΔW: how much ΔW amplifies directions that W itself barely uses."""
    d, w = delta.detach().to("cpu", torch.float64), weight.detach().to("cpu", torch.float64)
    u, _, vh = torch.linalg.svd(d, full_matrices=False)
    projected = u[:, :rank].T @ w @ vh[:rank].T
    norm = torch.linalg.matrix_norm(projected).item()
    return torch.linalg.matrix_norm(d).item() / norm if norm > 0 else math.inf


def factored_amplification(b: torch.Tensor, a: torch.Tensor, scaling: float, weight: torch.Tensor,
                           rank: int) -> float:
    """amplification_factor of ΔW = s·B·A (B: [d_out, k], A: [k, d_in]) without forming ΔW: its singular
    directions are Q_b U_c and Q_a V_c from the thin QRs and the k x k core's SVD (as factored_singular_values)."""
    b, a, w = (m.detach().to("cpu", torch.float64) for m in (b, a, weight))
    q_b, r_b = torch.linalg.qr(b)
    q_a, r_a = torch.linalg.qr(a.T)
    u_c, s_c, vh_c = torch.linalg.svd(scaling * r_b @ r_a.T)
    u, v = q_b @ u_c[:, :rank], q_a @ vh_c[:rank].T
    norm = torch.linalg.matrix_norm(u.T @ w @ v).item()
    return torch.linalg.vector_norm(s_c).item() / norm if norm > 0 else math.inf


def left_vectors(weight: torch.Tensor) -> torch.Tensor:
    """The left singular vectors of a weight, as columns, largest first (float64)."""
    return torch.linalg.svd(weight.detach().to("cpu", torch.float64), full_matrices=False)[0]


INTRUDER_K, INTRUDER_EPSILON = 10, 0.5  # Shuttleworth et al.'s top-k vectors and cosine threshold


def intruder_count(before_vectors: torch.Tensor, after: torch.Tensor, k: int = INTRUDER_K,
                   epsilon: float = INTRUDER_EPSILON) -> int:
    """intruder_dimensions with the pretrained weight's left vectors given (one SVD per base, not per member)."""
    top = left_vectors(after)[:, :k]
    best = (top.T @ before_vectors).abs().max(dim=1).values
    return int((best < epsilon).sum().item())


def intruder_dimensions(before: torch.Tensor, after: torch.Tensor, k: int = INTRUDER_K,
                        epsilon: float = INTRUDER_EPSILON) -> int:
    """Shuttleworth et al. 2024: how many of the top-k left singular vectors of the fine-tuned weight have a
    largest |cosine| below `epsilon` with every left singular vector of the pretrained weight."""
    return intruder_count(left_vectors(before), after, k, epsilon)


def _right_vectors(a: torch.Tensor) -> torch.Tensor:
    """The right singular vectors of A: [r, d_in], as rows, largest first."""
    return torch.linalg.svd(a.detach().to("cpu", torch.float64), full_matrices=False)[2]


def subspace_similarity(a1: torch.Tensor, a2: torch.Tensor, i: int, j: int) -> float:
    """Hu et al. 2021 §7.2: φ(A1, A2, i, j) = ‖U1⁽ⁱ⁾ᵀ U2⁽ʲ⁾‖²_F / min(i, j), U⁽ⁱ⁾ the top-i right singular
    vectors of A: [r, d_in]. 1 when one subspace holds the other, 0 when they are orthogonal."""
    v1, v2 = _right_vectors(a1)[:i].T, _right_vectors(a2)[:j].T
    return (torch.linalg.matrix_norm(v1.T @ v2) ** 2).item() / min(i, j)


def similarity_grid(a1: torch.Tensor, a2: torch.Tensor) -> list[list[float]]:
    """φ(A1, A2, i, j) for i = 1..r1 (rows) and j = 1..r2 (columns), from one product of the two bases:
    ‖U1⁽ⁱ⁾ᵀ U2⁽ʲ⁾‖² is the sum of the squared entries of its top-left i x j corner."""
    overlap = (_right_vectors(a1) @ _right_vectors(a2).T) ** 2  # [r1, r2]
    corners = overlap.cumsum(0).cumsum(1)
    r1, r2 = overlap.shape
    return [[corners[i - 1, j - 1].item() / min(i, j) for j in range(1, r2 + 1)] for i in range(1, r1 + 1)]
