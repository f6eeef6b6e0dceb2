"""The article's model: two bias-free linear layers, d_in -> hidden -> d_out, with no activation between."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..settings.task_specs import LINEAR_LAYERS as TARGETS  # noqa: F401 - the layers the experiment adapts


class TwoLayerLinear(nn.Module):
    """x: [n, d_in] -> layer1 -> [n, hidden] -> layer2 -> [n, d_out].

    Weights start as nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), but drawn from `generator`
    so that a seed fixes them without touching torch's global random state.
    """

    def __init__(self, d_in: int, hidden: int, d_out: int, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.layer1 = nn.Linear(d_in, hidden, bias=False, dtype=dtype)
        self.layer2 = nn.Linear(hidden, d_out, bias=False, dtype=dtype)
        with torch.no_grad():
            for layer in (self.layer1, self.layer2):
                bound = layer.in_features ** -0.5
                w = torch.rand(layer.weight.shape, generator=generator, dtype=dtype)
                layer.weight.copy_((2 * w - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(x))

