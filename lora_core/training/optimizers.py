"""The fine-tuning optimizers (the `optimizer` setting), as one table for the autograd path (torch's own) and
one for the hand-written paths (fast.py, fast_batched.py, batched.py): each on one flat buffer of parameters,
op for op as torch's single-tensor update does it, so a plain run's numbers are the same bit for bit
(tests/test_fast.py):

- adam: torch.optim.Adam with its defaults (no weight decay, no amsgrad), the article's;
- sgd: torch.optim.SGD without momentum, plain gradient descent on mini-batches: W ← W − lr · ∇.

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


class _Flat:
    """An optimizer on `params` (a flat tensor, updated in place) from `grads` (same shape, filled by the caller),
    with its learning-rate factors: `parts`, [(slice, factor)] covering the buffer, or `rate` per element."""

    def __init__(self, params: torch.Tensor, grads: torch.Tensor, faster: list[slice] | None = None,
                 lr_ratio: float = 1.0, rate: torch.Tensor | None = None) -> None:
        self.params, self.grads, self.rate = params, grads, rate
        self.scaled = torch.empty_like(params) if rate is not None else None
        self.slices = [(slice(None), 1.0)] if lr_ratio == 1.0 or not faster else [
            (part, lr_ratio if part in faster else 1.0) for part in _partition(params.shape[0], faster)]

    def step(self, lr: float) -> None:
        raise NotImplementedError

    def state(self) -> list[torch.Tensor]:
        """Its buffers laid out like `params` (Adam's moments; none for SGD)."""
        return []


class FlatSGD(_Flat):
    """torch.optim.SGD without momentum: params −= lr · grads."""

    def __init__(self, params: torch.Tensor, grads: torch.Tensor, faster: list[slice] | None = None,
                 lr_ratio: float = 1.0, rate: torch.Tensor | None = None) -> None:
        super().__init__(params, grads, faster, lr_ratio, rate)
        self.parts = [(params[p], grads[p], ratio) for p, ratio in self.slices]  # views made once

    @torch.no_grad()
    def step(self, lr: float) -> None:
        if self.rate is not None:
            self.params.addcmul_(self.grads, self.rate, value=-lr)
            return
        for params, grads, ratio in self.parts:
            params.add_(grads, alpha=-(lr * ratio))


class FlatAdam(_Flat):
    """torch.optim.Adam with its defaults."""

    def __init__(self, params: torch.Tensor, grads: torch.Tensor, faster: list[slice] | None = None,
                 lr_ratio: float = 1.0, rate: torch.Tensor | None = None) -> None:
        super().__init__(params, grads, faster, lr_ratio, rate)
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(params), torch.zeros_like(params)
        self.denom = torch.empty_like(params)
        self.steps = 0
        # Constants as 0-dim tensors of the parameters' dtype: a Python number is converted anew in every op.
        self.beta2, self.eps, self.bc2 = (torch.tensor(c, dtype=params.dtype, device=params.device)
                                          for c in (BETA2, EPS, 1.0))
        # (parameters, first moment, denominator, learning-rate factor) per part; views made once
        self.parts = [(params[p], self.exp_avg[p], self.denom[p], ratio) for p, ratio in self.slices]

    def state(self) -> list[torch.Tensor]:
        return [self.exp_avg, self.exp_avg_sq]

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


# The `optimizer` setting's values: torch's optimizer (the autograd path), the flat one (the hand-written paths).
TORCH_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
FLAT_OPTIMIZERS: dict[str, type[_Flat]] = {"adam": FlatAdam, "sgd": FlatSGD}


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
