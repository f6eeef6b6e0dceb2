"""The one Adam of the hand-written paths (fast.py, fast_batched.py, batched.py): torch.optim.Adam with its
defaults (no weight decay, no amsgrad) on one flat buffer of parameters, op for op as torch.optim.Adam's
single-tensor update does it, so a plain run's numbers are the same bit for bit (tests/test_fast.py).

A learning rate that differs between parameters comes in one of two forms:
- `faster`: slices of the buffer whose rate is `lr_ratio` times the rest's (LoRA+'s B factors in one run); the
  last op then runs per slice with its own rate, as torch.optim.Adam does for a second parameter group, so
  LoRA+ stays bit for bit too;
- `rate`: a factor per element (members trained together, each with its own λ, and padding at rate 0); the
  first moment is scaled by it before the last op, which rounds a little differently from a parameter group.
"""

from __future__ import annotations

import torch

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, which the general path uses


class FlatAdam:
    """Adam on `params` (a flat tensor, updated in place) from `grads` (same shape, filled by the caller)."""

    def __init__(self, params: torch.Tensor, grads: torch.Tensor, faster: list[slice] | None = None,
                 lr_ratio: float = 1.0, rate: torch.Tensor | None = None) -> None:
        self.params, self.grads, self.rate = params, grads, rate
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
        self.denom = torch.empty_like(params)
        self.scaled = torch.empty_like(params) if rate is not None else None
        self.steps = 0
        # Constants as 0-dim tensors of the parameters' dtype: a Python number is converted anew in every op.
        self.beta2, self.eps, self.bc2 = (torch.tensor(c, dtype=params.dtype, device=params.device)
                                          for c in (BETA2, EPS, 1.0))
        parts = [(slice(None), 1.0)] if lr_ratio == 1.0 or not faster else [
            (part, lr_ratio if part in faster else 1.0) for part in _partition(params.shape[0], faster)]
        # (parameters, first moment, denominator, learning-rate factor) per part; views made once
        self.parts = [(params[p], self.exp_avg[p], self.denom[p], ratio) for p, ratio in parts]

    def advance_moments(self) -> float:
        """One step of the moments and the denominator, op for op as torch.optim.Adam; returns the step's first
        bias correction, for the update itself."""
        self.steps += 1
        self.bc2.fill_((1 - BETA2 ** float(self.steps)) ** 0.5)
        self.exp_avg.lerp_(self.grads, 1 - BETA1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(self.grads, self.grads, value=1 - BETA2)
        torch.sqrt(self.exp_avg_sq, out=self.denom).div_(self.bc2).add_(self.eps)
        return 1 - BETA1 ** float(self.steps)

    @torch.no_grad()
    def step(self, lr: float) -> None:
        bias_correction1 = self.advance_moments()
        if self.rate is not None:
            moment = torch.mul(self.exp_avg, self.rate, out=self.scaled)
            self.params.addcdiv_(moment, self.denom, value=-lr / bias_correction1)
            return
        for params, exp_avg, denom, ratio in self.parts:
            params.addcdiv_(exp_avg, denom, value=-(lr * ratio) / bias_correction1)


def _partition(n: int, parts: list[slice]) -> list[slice]:
    """Slices covering range(n) in order: the given `parts` and the gaps between them."""
    out, at = [], 0
    for part in sorted(parts, key=lambda p: p.start):
        if part.start > at:
            out.append(slice(at, part.start))
        out.append(part)
        at = part.stop
    if at < n:
        out.append(slice(at, n))
    return out
