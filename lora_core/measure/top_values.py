"""The top singular values of what fine-tuning changed, as cheaply as each form allows: a dense matrix (exact up to
EXACT_MAX_ELEMENTS, else a randomised subspace iteration), a change kept as factors (two thin QRs), and a batch of
members' factors padded to a common width (measure/dynamics.py, every recorded epoch).

The randomised top-k (Halko, Martinsson & Tropp 2011) starts from a fixed seed, so a run repeats itself: exact to
rounding for values that stand apart from the rest, as a low-rank change's do, never above the true ones, and low
by up to a few per cent where the spectrum is flat.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..settings.dynamics_cost import DYNAMICS_EXACT_MAX
from .analysis import factored_singular_values

TOP_K = 8  # singular values kept per layer and for the residual, and the shift's directions followed
EXACT_MAX_ELEMENTS = DYNAMICS_EXACT_MAX  # a dense matrix up to this gets exact singular values every epoch
SUBSPACE_ITERATIONS = 4

Change = tuple[torch.Tensor, torch.Tensor] | torch.Tensor  # (s·B': [d_out, k], A': [k, d_in]) or a dense ΔW


def top_singular_values(matrix: torch.Tensor, k: int = TOP_K) -> list[float]:
    """The k largest singular values of a dense matrix, descending: exact up to EXACT_MAX_ELEMENTS, else from a
    randomised subspace iteration (Halko, Martinsson & Tropp 2011) started from a fixed seed."""
    m = matrix.detach().double()
    if m.numel() <= EXACT_MAX_ELEMENTS:
        return torch.linalg.svdvals(m)[:k].tolist()
    return subspace_singular_values(lambda x: m @ x, lambda y: m.T @ y, m.shape, k, m)[0]


def subspace_singular_values(apply: Callable[[torch.Tensor], torch.Tensor],
                             apply_t: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int], k: int,
                             like: torch.Tensor, start: torch.Tensor | None = None,
                             iterations: int = SUBSPACE_ITERATIONS) -> tuple[list[float], torch.Tensor]:
    """The k largest singular values of the [m, n] operator x -> apply(x) (apply_t its transpose), from a
    subspace iteration of k + 8 columns (of `like`'s dtype and device): started from a fixed-seed random block,
    or from `start` ([m, k + 8], the basis an earlier call returned: a slowly changing matrix then needs fewer
    iterations). Returns (values, basis); Rayleigh-Ritz values, so never above the true ones. An operator that
    maps [n, w] to [M, m, w] is M operators at once (members trained together): values [M][k], basis [M, m, w],
    each member's what its own call would give, up to rounding."""
    m, n = shape
    width = min(k + 8, m, n)
    if start is None or start.shape[-2:] != (m, width):
        omega = torch.randn(n, width, generator=torch.Generator().manual_seed(0), dtype=like.dtype)
        start = apply(omega.to(like.device))
    basis = torch.linalg.qr(start).Q
    for _ in range(iterations):
        basis = torch.linalg.qr(apply(apply_t(basis))).Q
    return torch.linalg.svdvals(apply_t(basis).mT)[..., :k].tolist(), basis


def top_of(change: Change) -> list[float]:
    """The top singular values of a layer's change: a dense one's (top_singular_values), or as batched_tops
    measures a member of factors alone."""
    if not isinstance(change, tuple):
        return top_singular_values(change)
    b, a = change
    return batched_tops(b[None], a[None], [a.shape[0]])[0]


def batched_tops(b: torch.Tensor, a: torch.Tensor, widths: list[int]) -> list[list[float]]:
    """The top singular values of each member's change s·B'A' from factors stacked and padded with zero columns
    (b: [M, d_out, k], a: [M, k, d_in], member i's first widths[i] of k real; as many values as it has columns):
    from the factors while they are thin (two QRs of [n, k]), padded only to the widest thin member's, or from the
    dense product once k is half the layer's width or more (its SVD is then cheaper than the QRs)."""
    thick = [2 * w >= min(b.shape[1], a.shape[2]) for w in widths]
    out: list[list[float]] = [[] for _ in widths]
    for dense in (False, True):
        members = [i for i, t in enumerate(thick) if t == dense]
        if not members:
            continue
        k = max(widths[i] for i in members)
        pick = torch.tensor(members)
        bs, as_ = b[pick, :, :k], a[pick, :k, :]
        values = torch.linalg.svdvals(bs @ as_) if dense else factored_singular_values(bs, as_)
        for row, i in zip(values, members, strict=True):
            out[i] = row[:min(TOP_K, widths[i])].tolist()
    return out


def padded(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    """The tensors stacked on a new first dimension, each padded with zeros along `dim` to the longest."""
    width = max(t.shape[dim] for t in tensors)
    pad = [(0, width - t.shape[dim]) if dim == -1 else (0, 0, 0, width - t.shape[dim]) for t in tensors]
    return torch.stack([torch.nn.functional.pad(t, p) for t, p in zip(tensors, pad, strict=True)])


def diagonal(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """diag(a @ b) for a: [k, n], b: [n, k], without the k x k product."""
    return (a * b.T).sum(dim=1)
