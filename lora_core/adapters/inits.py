"""How an adapter's factors start: the table of initialisations, each checked against PEFT in tests/test_variants.py.

Every initialiser takes the layer's frozen weight W: [d_out, d_in], the rank r and the scaling s, and returns
(A: [r, d_in], B: [d_out, r], residual). `residual` is None when B A starts at zero (the layer starts as the
base); otherwise the adapter starts with part of W, and the frozen base becomes the residual W − s·B·A, so the
layer still computes W x before training:

- gaussian: A ~ N(0, 1), the article's choice; B = 0.
- kaiming: A ~ U(−1/√d_in, 1/√d_in), PEFT's default (kaiming_uniform with a = √5); B = 0.
- pissa: W = U S Vᵀ; A = √(S_r/s) V_rᵀ, B = U_r √(S_r/s), so s·B·A is W's best rank-r part (PiSSA,
  Meng et al. 2024), the exact SVD as PEFT's init_lora_weights="pissa".
- olora: W = Q R; A = R[:r], B = Q[:, :r] (OLoRA, Büyükakyüz 2024), as PEFT's init_lora_weights="olora".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Factors = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]
Initialiser = Callable[[torch.Tensor, int, float, "torch.Generator | None"], Factors]


def _random_a(shape: tuple[int, int], weight: torch.Tensor, generator: torch.Generator | None,
              draw: Callable[..., torch.Tensor]) -> torch.Tensor:
    # Drawn on the CPU from the run's generator, so every device starts from the same numbers.
    return draw(shape, generator=generator, dtype=weight.dtype, device="cpu").to(weight.device)


def gaussian(weight: torch.Tensor, rank: int, scaling: float, generator: torch.Generator | None) -> Factors:
    a = _random_a((rank, weight.shape[1]), weight, generator, torch.randn)
    return a, weight.new_zeros(weight.shape[0], rank), None


def kaiming(weight: torch.Tensor, rank: int, scaling: float, generator: torch.Generator | None) -> Factors:
    bound = 1.0 / math.sqrt(weight.shape[1])
    a = (_random_a((rank, weight.shape[1]), weight, generator, torch.rand) * 2 - 1) * bound
    return a, weight.new_zeros(weight.shape[0], rank), None


def pissa(weight: torch.Tensor, rank: int, scaling: float, generator: torch.Generator | None) -> Factors:
    # PEFT's order of operations, so that the same float32 W gives the same bits.
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    s_r = s[:rank] / scaling
    a = torch.diag(torch.sqrt(s_r)) @ vh[:rank]
    b = u[:, :rank] @ torch.diag(torch.sqrt(s_r))
    return a, b, weight - scaling * b @ a


def olora(weight: torch.Tensor, rank: int, scaling: float, generator: torch.Generator | None) -> Factors:
    q, r = torch.linalg.qr(weight)
    a, b = r[:rank].contiguous(), q[:, :rank].contiguous()
    return a, b, weight - scaling * b @ a


# The initialisations by the `init` setting's value; registry.register_variant adds one.
INITIALISERS: dict[str, Initialiser] = {"gaussian": gaussian, "kaiming": kaiming, "pissa": pissa, "olora": olora}


@torch.no_grad()
def init_factors(weight: torch.Tensor, rank: int, scaling: float, init: str,
                 generator: torch.Generator | None = None) -> Factors:
    """(A, B, residual base or None) for `weight`: [d_out, d_in]; see the module's docstring."""
    if init not in INITIALISERS:
        raise ValueError(f"init must be one of {', '.join(INITIALISERS)}, got {init!r}")
    return INITIALISERS[init](weight.detach(), rank, scaling, generator)
