"""What each task is, without torch: its model's layers and their shapes, which of them an adapter goes on, its
rows, its loss, and how its shift reads. Validating a config (the rank limit), the path rule and the budget
read these; the task's data and model, which need torch, are in task_kinds.py beside them.

`values` below is a config or anything with its attributes (the Playground's settings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .choices import DIGIT_SHIFT_LABELS, SHIFT_LABELS

Shapes = dict[str, tuple[int, int]]  # {layer name: (d_in, d_out)}

# The article's model (model.py): d_in -> layer1 -> hidden -> layer2 -> d_out, both layers adapted.
LINEAR_LAYERS = ("layer1", "layer2")
# The digits network (mlp.py): input, hidden and output layer; any subset can carry an adapter.
MLP_LAYERS = ("layer1", "layer2", "layer3")
# The digits (digits.py): 1,797 images of 8 x 8 pixels in 10 classes, a quarter held out for evaluation.
SIDE = 8
PIXELS = SIDE * SIDE
CLASSES = 10
N_IMAGES = 1797  # the rows of scikit-learn's digits.csv.gz (tests/test_digits.py reads the file to check)
TEST_FRACTION = 0.25


def linear_shapes(d_in: int, hidden: int, d_out: int) -> Shapes:
    """{layer name: (d_in, d_out)} of the article's two layers."""
    return {"layer1": (d_in, hidden), "layer2": (hidden, d_out)}


def mlp_shapes(d_in: int, hidden: int, classes: int) -> Shapes:
    """{layer name: (d_in, d_out)} of the digits network's three layers."""
    return {"layer1": (d_in, hidden), "layer2": (hidden, hidden), "layer3": (hidden, classes)}


def split_sizes(n: int) -> tuple[int, int]:
    """(training rows, held-out rows) of n images."""
    n_eval = round(n * TEST_FRACTION)
    return n - n_eval, n_eval


@dataclass(frozen=True)
class TaskSpec:
    layer_shapes: Callable[[Any], Shapes]  # every linear layer of the model
    targets: Callable[[Any], tuple[str, ...]]  # the layers an adapter goes on
    rows: Callable[[Any], tuple[int, int]]  # (training rows, held-out rows), for estimates
    loss_name: str  # what the loss is, for labels
    classifies: bool  # whether runs also report accuracy
    biases: bool  # whether the model's layers have biases (full fine-tuning trains them too)
    # Whether the model is the article's two-layer linear one, which fast.py's hand-written gradients,
    # batched.py's stacked members and analysis.loss_floor (a linear map on Gaussian inputs) are written for.
    linear_model: bool
    shift_label: Callable[[Any], str]  # the shift a run met, in words (the Runs list, the Spectrum page)

    def adapted_shapes(self, values: Any) -> Shapes:
        """The shapes of the layers that get an adapter."""
        shapes = self.layer_shapes(values)
        return {name: shapes[name] for name in self.targets(values)}


TASK_SPECS: dict[str, TaskSpec] = {
    "linear": TaskSpec(
        layer_shapes=lambda c: linear_shapes(c.d_in, c.hidden, c.d_out),
        targets=lambda c: LINEAR_LAYERS,
        rows=lambda c: (c.n_samples, c.n_eval),
        loss_name="mean squared error", classifies=False, biases=False, linear_model=True,
        shift_label=lambda c: f"{SHIFT_LABELS[c.shift]} shift of size {c.shift_scale:g}"),
    "digits": TaskSpec(
        layer_shapes=lambda c: mlp_shapes(PIXELS, c.hidden, CLASSES),
        targets=lambda c: tuple(MLP_LAYERS[int(i) - 1] for i in c.layers.split(",")),
        rows=lambda c: split_sizes(N_IMAGES),
        loss_name="cross-entropy", classifies=True, biases=True, linear_model=False,
        shift_label=lambda c: f"digits {DIGIT_SHIFT_LABELS[c.digits_shift]}"),
}


def spec(values: Any) -> TaskSpec:
    """The TaskSpec of a config (or of settings with its attributes)."""
    return TASK_SPECS[values.task]


def rank_limit(values: Any) -> int:
    """The largest rank the adapted layers of `values` allow: the smallest dimension of an adapted layer."""
    return min(min(shape) for shape in spec(values).adapted_shapes(values).values())
