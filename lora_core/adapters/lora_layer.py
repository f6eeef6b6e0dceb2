"""The LoRA layer: a frozen `nn.Linear` plus a trainable low-rank update `s * B A`, in PEFT's orientation."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..settings.variants import lora_scaling
from .inits import init_factors


class LoRALinear(nn.Module):
    """y = base(x) + s * (x @ A.T) @ B.T with A: [r, d_in], B: [d_out, r], s = alpha / r (alpha / sqrt(r) with
    rsLoRA).

    With a zero-B initialisation the adapted layer equals the base layer before training (ΔW = 0). PiSSA and
    OLoRA start B A from the base weight and replace the base by the residual W − s·B·A (inits.py), so the layer
    again computes W x at first; `change_factors` then gives the change from the original W.
    The forward never builds the d_out x d_in update: two thin products cost (d_in + d_out) * r per row.
    A variant's layer (DoRA's) subclasses it and overrides what it changes; `kind` is its name in
    registry.LAYERS.
    """

    kind = "lora"

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

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The trained tensors beside A and B, by PEFT's name (DoRA's magnitude vector); none for plain LoRA."""
        return {}

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
