"""DoRA (Liu et al. 2024, "Weight-Decomposed Low-Rank Adaptation") as PEFT 0.21.2 computes it.

The adapted weight is split into a magnitude per output row and a direction:

    W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖_row          m: [d_out], trained, starts at ‖W + s·B·A‖_row

so before training W' = W. As the paper's §4.3 suggests and PEFT does, the norm is treated as a constant in
the backward pass (computed from detached factors), which saves memory and changes the gradient. PEFT's
forward, kept op for op: base(x) + (m/n − 1) · W x + (m/n) · s · B A x. Merging writes (m/n) ⊙ (W + s·B·A)
into W, so ΔW = W' − W rescales every row of W and is no longer of rank ≤ r.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lora_layer import LoRALinear


class DoRALinear(LoRALinear):
    """A LoRA layer with DoRA's trained magnitude vector `lora_magnitude`: [d_out] (PEFT's
    `lora_magnitude_vector`)."""

    kind = "dora"

    def __init__(self, base: nn.Linear, rank: int, alpha: float, init: str = "kaiming",
                 generator: torch.Generator | None = None, use_rslora: bool = False) -> None:
        super().__init__(base, rank, alpha, init, generator, use_rslora)
        self.lora_magnitude = nn.Parameter(self.weight_norm())
        self.merged_norm: torch.Tensor | None = None  # the norm merging divided by, to unmerge exactly

    @torch.no_grad()
    def weight_norm(self) -> torch.Tensor:
        """‖W + s·B·A‖ per output row: [d_out], from the unmerged base weight, outside autograd."""
        return torch.linalg.norm(self.base.weight + self.scaling * (self.lora_B @ self.lora_A), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        base = self.base(x)
        direct = base if self.base.bias is None else F.linear(x, self.base.weight)  # DoRA leaves a bias alone
        scale = (self.lora_magnitude / self.weight_norm()).view(1, -1)
        lora = (x @ self.lora_A.T) @ self.lora_B.T
        return base + (scale - 1) * direct + scale * lora * self.scaling

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"lora_magnitude_vector": self.lora_magnitude.detach()}

    def merged_weight(self) -> torch.Tensor:
        """W' = (m / n) ⊙ (W + s·B·A): [d_out, d_in], what merging writes into the base."""
        return (self.lora_magnitude / self.weight_norm()).view(-1, 1) * (self.base.weight + self.delta_weight())

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.merged_norm = self.weight_norm()
            self.base.weight.copy_(self.merged_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            scale = (self.lora_magnitude / self.merged_norm).view(-1, 1)
            self.base.weight.copy_(self.base.weight / scale - self.delta_weight())
            self.merged = False
