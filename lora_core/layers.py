"""The LoRA layer: a frozen `nn.Linear` plus a trainable low-rank update `s * B A`, in PEFT's orientation."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .inits import init_factors
from .tasks import rng
from .variants import lora_scaling

if TYPE_CHECKING:
    from .config import ExperimentConfig


class LoRALinear(nn.Module):
    """y = base(x) + s * (x @ A.T) @ B.T with A: [r, d_in], B: [d_out, r], s = alpha / r (alpha / sqrt(r) with
    rsLoRA).

    With a zero-B initialisation the adapted layer equals the base layer before training (ΔW = 0). PiSSA and
    OLoRA start B A from the base weight and replace the base by the residual W − s·B·A (inits.py), so the layer
    again computes W x at first; `change_factors` then gives the change from the original W.
    The forward never builds the d_out x d_in update: two thin products cost (d_in + d_out) * r per row.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, init: str = "kaiming",
                 generator: torch.Generator | None = None, use_rslora: bool = False) -> None:
        super().__init__()
        if not 1 <= rank <= min(base.in_features, base.out_features):
            raise ValueError(f"rank must be from 1 to {min(base.in_features, base.out_features)}, got {rank}")
        base.requires_grad_(False)
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.use_rslora = use_rslora
        self.init = init
        self.scaling = lora_scaling(alpha, rank, use_rslora)
        self.merged = False
        a, b, residual = init_factors(base.weight, rank, self.scaling, init, generator)
        self.lora_A = nn.Parameter(a.to(base.weight.dtype).contiguous())
        self.lora_B = nn.Parameter(b.to(base.weight.dtype).contiguous())
        # Where training started, when not from B A = 0: the change from the original W is s (B A − B0 A0).
        self.initial = (self.lora_A.detach().clone(), self.lora_B.detach().clone()) if residual is not None else None
        if residual is not None:
            with torch.no_grad():
                base.weight.copy_(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return self.base(x) + self.scaling * (x @ self.lora_A.T) @ self.lora_B.T

    def delta_weight(self) -> torch.Tensor:
        """s * B A: [d_out, d_in], what merging adds to the (possibly residual) base; PEFT's get_delta_weight."""
        return self.scaling * self.lora_B @ self.lora_A

    def change_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B': [d_out, k], A': [k, d_in]) with s * B' A' the change from the original W once merged:
        k = r from a zero-B start, k = 2r from PiSSA or OLoRA (the trained B A minus the starting B0 A0)."""
        if self.initial is None:
            return self.lora_B.detach(), self.lora_A.detach()
        a0, b0 = self.initial
        return torch.cat([self.lora_B.detach(), -b0], dim=1), torch.cat([self.lora_A.detach(), a0], dim=0)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the base weight; the forward then costs what the base layer costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the adapter back out of the base weight."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def add_lora(model: nn.Module, targets: Iterable[str], rank: int, alpha: float, init: str = "kaiming",
             generator: torch.Generator | None = None, *, use_rslora: bool = False,
             use_dora: bool = False) -> dict[str, LoRALinear]:
    """Replace the named `nn.Linear` submodules of `model` by LoRA layers (DoRA layers with `use_dora`), freeze
    everything else.

    Returns the new layers by name. A name that is missing or not an `nn.Linear` raises ValueError.
    """
    from .dora import DoRALinear  # dora.py builds on LoRALinear

    layer_class = {False: LoRALinear, True: DoRALinear}[use_dora]
    model.requires_grad_(False)
    adapted = {}
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, child, None)
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"{name!r} is not an nn.Linear of this model")
        adapted[name] = layer_class(layer, rank, alpha, init, generator, use_rslora)
        setattr(parent, child, adapted[name])
    return adapted


def adapted(base: nn.Module, config: ExperimentConfig) -> nn.Module:
    """A copy of `base` with the adapter `config` asks for on the layers its task adapts (its rank, α,
    initialisation from the run's adapter stream, rsLoRA, DoRA), as every path starts from it."""
    from .task_kinds import kind  # task_kinds builds on the models this module adapts

    model = copy.deepcopy(base)
    add_lora(model, kind(config).targets(config), config.rank, config.alpha, config.init, rng(config.seed, "adapter"),
             use_rslora=config.use_rslora, use_dora=config.use_dora)
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The LoRA layers of `model` by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base weight and put the plain `nn.Linear` back; returns `model`."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    return model
