"""What fine-tuning's dynamics (measure/dynamics.py) cost: the memory their recorder holds and the time one
recorded epoch of one member takes in a sweep's batch. No torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .choices import BYTES_PER_ITEM
from .speeds import MACS_PER_SECOND, SVD_SLOWDOWN, svd_macs
from .task_specs import spec

if TYPE_CHECKING:
    from .config import ExperimentConfig

# Fine-tuning's dynamics (measure/dynamics.py) measure a dense matrix exactly up to this many elements, else with
# a subspace iteration; what they hold is `dynamics_bytes`.
DYNAMICS_EXACT_MAX = 128 * 128


def dynamics_bytes(c: ExperimentConfig) -> int:
    """Memory the dynamics' recorder holds for a linear-task run (one per sweep batch): θ'ᵀ and what the base
    lacks of it, d_out x d_in each, and each epoch a dense residual in float64 with svdvals' workspace (about
    three copies, of at most DYNAMICS_EXACT_MAX elements: wider maps go through thin products)."""
    if not spec(c).linear_model:
        return 0
    theta = c.d_in * c.d_out
    return 2 * theta * BYTES_PER_ITEM[c.dtype] + 3 * 8 * min(theta, DYNAMICS_EXACT_MAX)


def batch_dynamics_bytes(c: ExperimentConfig, widths: list[int]) -> int:
    """What one recorded epoch of a sweep's batch holds at once (measure/dynamics.py's record_batch), members of
    `widths` factor columns each: each member's s·B (A's are views), every member's factors padded to the widest,
    and ΔM's two thin factors with the products they are made of. It was missing from the batches' estimates:
    12 members of ranks 100-200 at 400 wide measured 236 MiB at peak with it, 164 MiB without, where the whole
    estimate was 246 MiB (this counts 96 MiB for it)."""
    if not spec(c).linear_model:
        return 0
    k, members = max(widths), len(widths)
    own = sum(widths) * (c.hidden + c.d_out)
    padded = members * k * (c.d_in + 2 * c.hidden + c.d_out)
    thin = members * k * (4 * c.d_out + 3 * c.d_in + k)
    return BYTES_PER_ITEM[c.dtype] * (own + padded + thin)


# A recorded epoch of one member of a sweep's batch (measure/dynamics.py's record_batch, beside its held-out
# evaluation and report): about 0.3 ms of small ops (7 December: 0.36-0.49 ms in all at 64 wide, where the
# residual's SVD is a third of it) and the residual's top values: a dense SVD, or a subspace iteration of
# DYNAMICS_COLUMNS columns, about DYNAMICS_APPLICATIONS products with the d_out x d_in residual.
DYNAMICS_EPOCH_SECONDS = 3e-4
DYNAMICS_COLUMNS, DYNAMICS_APPLICATIONS = 16, 16


def dynamics_seconds(c: ExperimentConfig) -> float:
    """What recording one epoch of one member's dynamics costs in a sweep's batch: the fixed part alone where
    the task is not the linear one (no residual, only the changes' factors)."""
    if not spec(c).linear_model:
        return DYNAMICS_EPOCH_SECONDS
    theta = c.d_in * c.d_out
    dense = theta <= DYNAMICS_EXACT_MAX
    residual = svd_macs(c.d_out, c.d_in) if dense else DYNAMICS_APPLICATIONS * DYNAMICS_COLUMNS * theta
    return DYNAMICS_EPOCH_SECONDS + SVD_SLOWDOWN * residual / MACS_PER_SECOND
