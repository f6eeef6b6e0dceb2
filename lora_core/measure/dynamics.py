"""What fine-tuning learns, epoch by epoch: the directions of each layer's change ΔW and, for the linear task, how
much of each direction the shift needs the model has learned end to end.

After an epoch (loop.records_dynamics picks which), `Dynamics` measures:

- `delta`: per changed layer, the top singular values of ΔW, from the factors (s·B'A', the change from the
  pretrained W: r values, 2r for PiSSA/OLoRA; DoRA's direction update only, as LayerSpectra.delta_factored) at
  the cost of two thin QRs; under full fine-tuning of the dense W − W₀;
- `learned` (linear task): the model maps x to W₂'W₁'x, so its change end to end is ΔM = W₂'W₁' − W₂W₁; with
  the shift's singular triplets Δθᵀ = Σ σᵢ uᵢ vᵢᵀ, uᵢᵀ ΔM vᵢ / σᵢ is the share of direction i learned (0: none,
  1: all of it). With adapters ΔM keeps a factored form, [W₂L₁ + L₂(R₂L₁) | L₂] [R₁; R₂W₁], so this is thin too;
- `residual` (linear task): the top singular values of what is still missing, θ'ᵀ − W₂'W₁'.

Dense matrices over EXACT_MAX_ELEMENTS (full fine-tuning's W − W₀ and the residual of wide layers) get a
randomised top-k (top_values.py); `approximate(config)` says when a run has any.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import torch
import torch.nn as nn

from ..adapters.lora_layer import LoRALinear
from ..settings.config import ExperimentConfig
from ..settings.results import EpochDynamics, PhaseHistory, records_dynamics
from ..tasks.data import Task
from ..tasks.linear import shift_delta, shift_factors
from ..tasks.registry import kind
from .top_values import (
    EXACT_MAX_ELEMENTS,
    SUBSPACE_ITERATIONS,
    TOP_K,
    Change,
    batched_tops,
    diagonal,
    padded,
    subspace_singular_values,
    top_of,
    top_singular_values,
)

KEPT_BYTES = 16 * 2**20  # factors `keep` holds before measuring them


def changed_layers(config: ExperimentConfig) -> tuple[str, ...]:
    """The layers fine-tuning changes: the adapted ones, every layer under full fine-tuning."""
    task = kind(config)
    return task.targets(config) if config.method == "lora" else tuple(task.layer_shapes(config))


def approximate(config: ExperimentConfig) -> bool:
    """Whether a run's recorded dynamics include randomised (approximate) singular values."""
    shapes = kind(config).layer_shapes(config)
    dense = [d_in * d_out for name, (d_in, d_out) in shapes.items() if name in changed_layers(config)]
    full = config.method == "full" and max(dense, default=0) > EXACT_MAX_ELEMENTS
    return full or (kind(config).linear_model and config.d_in * config.d_out > EXACT_MAX_ELEMENTS)


def _modes(config: ExperimentConfig, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The shift's top singular triplets of Δθᵀ: (U: [d_out, k], σ: [k], V: [d_in, k]), from its factors where it
    has them; a full-rank shift's from a dense SVD up to EXACT_MAX_ELEMENTS, else None (too wide to follow)."""
    factors = shift_factors(config)
    if factors is not None:
        left, right = factors  # Δθ = L R, so Δθᵀ = Rᵀ Lᵀ
        qa, ra = torch.linalg.qr(right.T.double())
        qb, rb = torch.linalg.qr(left.double())
        u, s, vh = torch.linalg.svd(ra @ rb.T)
        u, v = qa @ u, qb @ vh.T
    elif config.d_in * config.d_out <= EXACT_MAX_ELEMENTS:
        u, s, vh = torch.linalg.svd(shift_delta(config).T.double(), full_matrices=False)
        v = vh.T
    else:
        return None
    keep = min(TOP_K, int((s > 1e-6 * s[0]).sum()))
    return u[:, :keep].to(dtype), s[:keep].to(dtype), v[:, :keep].to(dtype)


class Dynamics:
    """Measures a fine-tune of `config` from the pretrained `base` towards the `shifted` task (see the module)."""

    def __init__(self, config: ExperimentConfig, base: nn.Module, shifted: Task) -> None:
        self.names = changed_layers(config)
        self.kept: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []  # keep(): factors waiting to be measured
        self.measured: list[EpochDynamics | None] = []  # ... and what was measured of them so far
        self.before = {name: base.get_submodule(name).weight.detach().clone() for name in self.names}
        self.linear = kind(config).linear_model
        if self.linear:
            w1, w2 = base.layer1.weight.detach(), base.layer2.weight.detach()  # [hidden, d_in], [d_out, hidden]
            self.w1, self.w2 = w1, w2
            self.target = shifted.theta.T.to(w1.dtype)  # θ'ᵀ: [d_out, d_in]
            self.missing = self.target - w2 @ w1  # what the pretrained model lacks
            self.basis: torch.Tensor | None = None  # the residual's subspace (per member), from epoch to epoch
            modes = _modes(config, w1.dtype)
            self.modes = None if modes is None else tuple(t.to(w1.device) for t in modes)

    def keep(self, model: nn.Module) -> None:
        """Keep this epoch's factors to measure later (`measure_kept`), where nobody watches the run live: one
        batched measurement of many epochs costs a fraction of one per epoch. Full fine-tuning's dense changes
        are measured at once (keeping them would cost a model per epoch); kept factors are measured whenever they
        pass KEPT_BYTES, so what waits stays small."""
        layers = [model.get_submodule(name) for name in self.names]
        if not all(isinstance(layer, LoRALinear) for layer in layers):
            self.measured.append(self.record(model))
            return
        change = {}
        for name, layer in zip(self.names, layers, strict=True):
            b, a = layer.change_factors()
            change[name] = (layer.scaling * b.clone(), a.clone())
        self.kept.append(change)
        if sum(t.numel() * t.element_size() for c in self.kept for pair in c.values() for t in pair) > KEPT_BYTES:
            self.measured += self.record_batch(self.kept)
            self.kept = []

    def measure_kept(self, history: PhaseHistory, epochs: int) -> None:
        """Measure what `keep` kept and add it to `history` at the epochs it was kept after (the loop keeps one
        per epoch `records_dynamics` picks, up to the last epoch it reported)."""
        if self.kept:
            self.measured += self.record_batch(self.kept)
            self.kept = []
        recorded = [e for e in range(1, len(history.train_loss) + 1) if records_dynamics(e, epochs)]
        for epoch, dynamics in zip(recorded, self.measured, strict=False):
            if dynamics is not None:
                history.add_dynamics(epoch, dynamics)
        self.measured = []

    def record(self, model: nn.Module) -> EpochDynamics | None:
        """The dynamics of `model` as training left it (its LoRA layers unmerged); None once it has diverged."""
        changes: dict[str, Change] = {}
        for name in self.names:
            layer = model.get_submodule(name)
            if isinstance(layer, LoRALinear):
                b, a = layer.change_factors()
                changes[name] = (layer.scaling * b, a)
            else:
                changes[name] = layer.weight.detach() - self.before[name]
        return self.record_changes(changes)

    @torch.no_grad()
    def record_changes(self, changes: dict[str, Any]) -> EpochDynamics | None:
        """The dynamics from each changed layer's change (factors (s·B', A'), or a dense ΔW); None when
        a change is no longer finite (the run diverged this epoch: its loss says so, and nothing is measured)."""
        tensors = [t for change in changes.values() for t in (change if isinstance(change, tuple) else (change,))]
        if not math.isfinite(sum(float(t.abs().sum()) for t in tensors)):  # one number: a NaN or inf anywhere
            return None
        delta = {name: top_of(change) for name, change in changes.items()}
        if not self.linear:
            return EpochDynamics(delta)
        first, second = changes["layer1"], changes["layer2"]
        if isinstance(first, tuple) and isinstance(second, tuple):
            # ΔM = [W2 L1 + L2 (R2 L1) | L2] [R1; R2 W1]: thin, and the residual is missing − left @ right
            (l1, r1), (l2, r2) = first, second
            left = torch.cat([self.w2 @ l1 + l2 @ (r2 @ l1), l2], dim=1)
            right = torch.cat([r1, r2 @ self.w1], dim=0)
            terms = [(self.missing, None, 1.0), (left, right, -1.0)]
        else:  # full fine-tuning: the residual is θ'ᵀ − W2' W1', ΔM = W2' W1' − W2 W1, neither formed when wide
            w1 = self.w1 + (first[0] @ first[1] if isinstance(first, tuple) else first)
            w2 = self.w2 + (second[0] @ second[1] if isinstance(second, tuple) else second)
            terms = [(self.target, None, 1.0), (w2, w1, -1.0)]
        learned = []
        if self.modes is not None:  # uᵢᵀ ΔM vᵢ = −uᵢᵀ (residual − missing) vᵢ, from thin products
            u, sigma, v = self.modes
            along = sum(sign * diagonal(u.T @ a, (b @ v) if b is not None else v) for a, b, sign in terms)
            learned = ((diagonal(u.T @ self.missing, v) - along) / sigma).tolist()
        return EpochDynamics(delta, self._residual(terms), learned)

    @torch.no_grad()
    def record_batch(self, changes: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> list[EpochDynamics | None]:
        """`record_changes` for members trained together from this base towards this shift (a sweep's batch,
        loop.BatchRecorder), each member's factors (s·B', A') per layer, in one batched computation: factors
        padded with zero columns to the widest member's (zeros add no singular value but zeros, cut off again)."""
        finite = [all(bool(torch.isfinite(t).all()) for pair in member.values() for t in pair) for member in changes]
        # a diverged member is measured as no change (and reported as nothing): its numbers would stop the batch's
        changes = [m if ok else {name: (torch.zeros_like(b), torch.zeros_like(a)) for name, (b, a) in m.items()}
                   for m, ok in zip(changes, finite, strict=True)]
        widths = [member[self.names[0]][1].shape[0] for member in changes]
        stacked = {name: (padded([m[name][0] for m in changes], -1), padded([m[name][1] for m in changes], -2))
                   for name in self.names}
        values = {name: batched_tops(*pair, widths) for name, pair in stacked.items()}
        deltas = [{name: values[name][i] for name in self.names} for i in range(len(changes))]
        if not self.linear:
            return [EpochDynamics(d) if ok else None for d, ok in zip(deltas, finite, strict=True)]
        (l1, r1), (l2, r2) = stacked["layer1"], stacked["layer2"]
        left = torch.cat([self.w2 @ l1 + l2 @ (r2 @ l1), l2], dim=-1)  # ΔM = left @ right per member
        right = torch.cat([r1, r2 @ self.w1], dim=-2)
        learned = [[] for _ in changes]
        if self.modes is not None:
            u, sigma, v = self.modes
            learned = (((u.T @ left) * (right @ v).mT).sum(dim=-1) / sigma).tolist()
        if self.missing.numel() <= EXACT_MAX_ELEMENTS:  # a chunk of members at a time, as much as one wide one
            chunk = max(1, EXACT_MAX_ELEMENTS // self.missing.numel())
            residuals = [values for at in range(0, len(changes), chunk) for values in torch.linalg.svdvals(
                (self.missing - left[at:at + chunk] @ right[at:at + chunk]).double())[:, :TOP_K].tolist()]
        else:  # wide: every member's own warm-started subspace iteration, batched
            residuals = self._residual([(self.missing, None, 1.0), (left, right, -1.0)])
        return [EpochDynamics(d, res, learn) if ok else None
                for d, res, learn, ok in zip(deltas, residuals, learned, finite, strict=True)]

    def _residual(self, terms: list[tuple[torch.Tensor, torch.Tensor | None, float]]) -> list[Any]:
        """The top singular values of Σ sign · a @ b (b None: a itself): exact up to EXACT_MAX_ELEMENTS, else a
        subspace iteration warm-started from the last epoch's basis (the residual changes a little from one epoch
        to the next, so two iterations then do what four do from scratch). Batched terms (a: [M, m, k]) give one
        list of values per member (the wide case of record_batch)."""
        if self.missing.numel() <= EXACT_MAX_ELEMENTS:
            return top_singular_values(sum(sign * (a if b is None else a @ b) for a, b, sign in terms))

        def apply(x: torch.Tensor) -> torch.Tensor:
            return sum(sign * (a @ x if b is None else a @ (b @ x)) for a, b, sign in terms)

        def apply_t(y: torch.Tensor) -> torch.Tensor:
            return sum(sign * (a.mT @ y if b is None else b.mT @ (a.mT @ y)) for a, b, sign in terms)

        start = self.basis
        values, self.basis = subspace_singular_values(apply, apply_t, self.missing.shape, TOP_K, self.missing, start,
                                                      2 if start is not None else SUBSPACE_ITERATIONS)
        return values


HALF = 0.5  # a direction counts as arrived once half of it is learned


def half_learned_epochs(history: PhaseHistory) -> list[int | None]:
    """For each of the shift's directions followed (strongest first), the first recorded epoch at which the
    model had learned at least half of it; None for one it never reached."""
    if not history.modes_learned:
        return []
    return [next((epoch for epoch, row in zip(history.spectra_epochs, history.modes_learned, strict=True)
                  if row[i] >= HALF), None) for i in range(len(history.modes_learned[0]))]


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")


def arrivals(history: PhaseHistory) -> str:
    """What this run shows of the directions' arrival, from its numbers: e.g. "The shift's first direction was
    half learned at epoch 9, its second at epoch 19, its third at epoch 32: one at a time, largest first."
    Empty where the run follows no direction."""
    epochs = half_learned_epochs(history)
    if not epochs:
        return ""
    said = [f"at epoch {e}" if e is not None else "not within the run" for e in epochs]
    text = f"The shift's first direction was half learned {said[0]}" + "".join(
        f", its {ORDINALS[i]} {said[i]}" for i in range(1, len(said)))
    if len(epochs) == 1 or None in epochs:
        return text + "."
    steps = list(pairwise(epochs))
    if all(a < b for a, b in steps):
        return text + ": one at a time, largest first."
    if all(a <= b for a, b in steps):
        return text + ": largest first, some of them in the same epoch."
    return text + ": not in the order of their sizes."
