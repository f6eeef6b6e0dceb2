"""The digits task's network: 64 -> hidden -> hidden -> 10, linear layers with biases and ReLU between them."""

from __future__ import annotations

import torch
import torch.nn as nn


class DigitsMLP(nn.Module):
    """x: [n, d_in] -> layer1 -> ReLU -> layer2 -> ReLU -> layer3 -> logits [n, classes].

    Weights and biases start as nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from
    `generator` so that a seed fixes them without touching torch's global random state.
    """

    def __init__(self, d_in: int, hidden: int, classes: int, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.layer1 = nn.Linear(d_in, hidden, dtype=dtype)
        self.layer2 = nn.Linear(hidden, hidden, dtype=dtype)
        self.layer3 = nn.Linear(hidden, classes, dtype=dtype)
        with torch.no_grad():
            for layer in (self.layer1, self.layer2, self.layer3):
                bound = layer.in_features ** -0.5
                for tensor in (layer.weight, layer.bias):
                    tensor.copy_((2 * torch.rand(tensor.shape, generator=generator, dtype=dtype) - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(torch.relu(self.layer2(torch.relu(self.layer1(x)))))

