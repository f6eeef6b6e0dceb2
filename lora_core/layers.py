"""The LoRA layer: a frozen `nn.Linear` plus a trainable low-rank update `s * B A`, in PEFT's orientation."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn


class LoRALinear(nn.Module):
    """y = base(x) + s * (x @ A.T) @ B.T with A: [r, d_in], B: [d_out, r], s = alpha / r.

    B starts at zero so the adapted layer equals the base layer before training (ΔW = 0).
    The forward never builds the d_out x d_in update: two thin products cost (d_in + d_out) * r per row.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, init: str = "kaiming",
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 1 <= rank <= min(base.in_features, base.out_features):
            raise ValueError(f"rank must be from 1 to {min(base.in_features, base.out_features)}, got {rank}")
        base.requires_grad_(False)
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.merged = False
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=w.dtype, device=w.device))
        init_lora_A(self.lora_A, init, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return self.base(x) + self.scaling * (x @ self.lora_A.T) @ self.lora_B.T

    def delta_weight(self) -> torch.Tensor:
        """ΔW = s * B A: [d_out, d_in]."""
        return self.scaling * self.lora_B @ self.lora_A

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ΔW into the base weight; the forward then costs what the base layer costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ΔW back out of the base weight."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def init_lora_A(A: torch.Tensor, init: str, generator: torch.Generator | None = None) -> None:
    """Fill A: [r, d_in] in place: 'gaussian' is the article's N(0, 1); 'kaiming' is PEFT's default,
    kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(d_in), 1/sqrt(d_in))."""
    with torch.no_grad():
        if init == "gaussian":
            A.copy_(torch.randn(A.shape, generator=generator, dtype=A.dtype, device="cpu"))
        elif init == "kaiming":
            bound = 1.0 / math.sqrt(A.shape[1])
            A.copy_((torch.rand(A.shape, generator=generator, dtype=A.dtype, device="cpu") * 2 - 1) * bound)
        else:
            raise ValueError(f"init must be 'gaussian' or 'kaiming', got {init!r}")


def add_lora(model: nn.Module, targets: Iterable[str], rank: int, alpha: float, init: str = "kaiming",
             generator: torch.Generator | None = None) -> dict[str, LoRALinear]:
    """Replace the named `nn.Linear` submodules of `model` by LoRA layers, freeze everything else.

    Returns the new layers by name. A name that is missing or not an `nn.Linear` raises ValueError.
    """
    model.requires_grad_(False)
    adapted = {}
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, child, None)
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"{name!r} is not an nn.Linear of this model")
        adapted[name] = LoRALinear(layer, rank, alpha, init, generator)
        setattr(parent, child, adapted[name])
    return adapted


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
