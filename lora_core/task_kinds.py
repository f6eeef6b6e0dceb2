"""The tasks a run can learn, as one table: each kind's data, model, layers, and which analyses apply to it.

`linear` is the article's regression y = x θ with a two-layer linear model (tasks.py, model.py); `digits` the
8×8 handwritten digits with a ReLU network (digits.py, mlp.py). The loss follows the labels (training.py): mean
squared error for real-valued targets, cross-entropy for class indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from . import digits
from .config import DIGIT_SHIFT_LABELS, SHIFT_LABELS
from .mlp import LAYERS, DigitsMLP, mlp_shapes
from .model import TARGETS, TwoLayerLinear, layer_shapes
from .tasks import Task, make_tasks

Shapes = dict[str, tuple[int, int]]  # {layer name: (d_in, d_out)}


@dataclass(frozen=True)
class TaskKind:
    """What a task is. `values` below is a config or anything with its attributes (the Playground's settings)."""

    make_tasks: Callable[[Any, torch.device | str], tuple[Task, Task]]  # (original, shifted)
    build_model: Callable[[Any, torch.Generator | None], nn.Module]  # fresh weights from the generator
    layer_shapes: Callable[[Any], Shapes]  # every linear layer of the model
    targets: Callable[[Any], tuple[str, ...]]  # the layers an adapter goes on
    rows: Callable[[Any], tuple[int, int]]  # (training rows, held-out rows), for estimates
    loss_name: str  # what the loss is, for labels
    classifies: bool  # whether runs also report accuracy
    biases: bool  # whether the model's layers have biases (full fine-tuning trains them too)
    # Whether the model is the article's two-layer linear one, which fast.py's hand-written gradients,
    # batched.py's stacked members and analysis.loss_floor (a linear map on Gaussian inputs) are written for.
    linear_model: bool
    # A few held-out inputs with both models' predictions for the pages (config, base, merged, shifted task), or
    # None where there is nothing to draw.
    samples: Callable[[Any, nn.Module, nn.Module, Task], list[dict]] | None = None
    # The shift a run met, in words for labels (the Runs list, the Spectrum page).
    shift_label: Callable[[Any], str] = lambda values: ""

    def adapted_shapes(self, values: Any) -> Shapes:
        """The shapes of the layers that get an adapter."""
        shapes = self.layer_shapes(values)
        return {name: shapes[name] for name in self.targets(values)}


def _dtype(values: Any) -> torch.dtype:
    return getattr(torch, values.dtype)


TASK_KINDS: dict[str, TaskKind] = {
    "linear": TaskKind(
        make_tasks=make_tasks,
        build_model=lambda c, g: TwoLayerLinear(c.d_in, c.hidden, c.d_out, g, _dtype(c)),
        layer_shapes=lambda c: layer_shapes(c.d_in, c.hidden, c.d_out),
        targets=lambda c: TARGETS,
        rows=lambda c: (c.n_samples, c.n_eval),
        loss_name="mean squared error", classifies=False, biases=False, linear_model=True,
        shift_label=lambda c: f"{SHIFT_LABELS[c.shift]} shift of size {c.shift_scale:g}"),
    "digits": TaskKind(
        make_tasks=digits.make_digit_tasks,
        build_model=lambda c, g: DigitsMLP(digits.PIXELS, c.hidden, digits.CLASSES, g, _dtype(c)),
        layer_shapes=lambda c: mlp_shapes(digits.PIXELS, c.hidden, digits.CLASSES),
        targets=lambda c: tuple(LAYERS[int(i) - 1] for i in c.layers.split(",")),
        rows=lambda c: digits.split_sizes(len(digits.load()[1])),
        loss_name="cross-entropy", classifies=True, biases=True, linear_model=False, samples=digits.sample_grid,
        shift_label=lambda c: f"digits {DIGIT_SHIFT_LABELS[c.digits_shift]}"),
}


def kind(values: Any) -> TaskKind:
    """The TaskKind of a config (or of settings with its attributes)."""
    return TASK_KINDS[values.task]
