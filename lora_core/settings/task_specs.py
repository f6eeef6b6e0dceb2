"""What each task is, without torch: its model's layers and their shapes, which of them an adapter goes on, its
rows, its loss, and how its shift reads. Validating a config (the rank limit), the path rule and the budget
read these; the task's data and model, which need torch, are in task_kinds.py beside them.

`values` below is a config or anything with its attributes (the Playground's settings).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .choices import DIGIT_SHIFT_LABELS, SHIFT_LABELS, TARGET_MODULES, TARGET_PRESETS, TEXT_SHIFT_LABELS

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


# The text task (tasks/text_data.py, text_model.py): characters as tokens, id 0 the unknown one, then printable
# ASCII and the newline; the model's adaptable modules in a block, PEFT's names.
TEXT_VOCAB = ("\ufffd", *string.printable[:95], "\n")  # string.printable starts with the 95 printable ASCII
TEXT_MODULES = tuple(TARGET_MODULES.values())


def linear_shapes(d_in: int, hidden: int, d_out: int) -> Shapes:
    """{layer name: (d_in, d_out)} of the article's two layers."""
    return {"layer1": (d_in, hidden), "layer2": (hidden, d_out)}


def mlp_shapes(d_in: int, hidden: int, classes: int) -> Shapes:
    """{layer name: (d_in, d_out)} of the digits network's three layers."""
    return {"layer1": (d_in, hidden), "layer2": (hidden, hidden), "layer3": (hidden, classes)}


def text_shapes(d_model: int, blocks: int) -> Shapes:
    """{layer name: (d_in, d_out)} of the text model's linear layers, block by block, then its head."""
    block = {"q_proj": (d_model, d_model), "k_proj": (d_model, d_model), "v_proj": (d_model, d_model),
             "o_proj": (d_model, d_model), "fc1": (d_model, 4 * d_model), "fc2": (4 * d_model, d_model)}
    shapes = {f"blocks.{i}.{name}": shape for i in range(blocks) for name, shape in block.items()}
    return {**shapes, "head": (d_model, len(TEXT_VOCAB))}


def text_other_params(d_model: int, blocks: int, context: int) -> int:
    """The text model's parameters outside its linear layers: token and position embeddings, and the weight and
    bias of two layer norms per block and the final one."""
    return (len(TEXT_VOCAB) + context) * d_model + 2 * d_model * (2 * blocks + 1)


def text_targets(targets: str, blocks: int) -> tuple[str, ...]:
    """The full names of the modules a `targets` setting ('q,v', 'attention', ...) adapts, block by block."""
    short = TARGET_PRESETS.get(targets) or tuple(targets.split(","))
    return tuple(f"blocks.{i}.{TARGET_MODULES[n]}" for i in range(blocks) for n in TARGET_MODULES if n in short)


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
    # What makes a config of this task impossible beyond its settings' own bounds, in words; None when it can run
    problem: Callable[[Any], str | None] = lambda c: None
    # The model's trained parameters outside its linear layers (embeddings, norms): full fine-tuning trains them
    other_params: Callable[[Any], int] = lambda c: 0
    # The model in a few words for the pages; None: its layers' widths in a chain ('64 → 64 → 64')
    model_label: Callable[[Any], str] | None = None

    def describe_model(self, values: Any) -> str:
        """The model in a few words: `model_label`'s, or the chain of its layers' widths."""
        if self.model_label is not None:
            return self.model_label(values)
        shapes = list(self.layer_shapes(values).values())
        return " → ".join(str(n) for n in [shapes[0][0], *(d_out for _, d_out in shapes)])

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
    "text": TaskSpec(
        layer_shapes=lambda c: text_shapes(c.hidden, c.blocks),
        targets=lambda c: text_targets(c.targets, c.blocks),
        rows=lambda c: (c.n_samples, c.n_eval),
        loss_name="cross-entropy (nats per character)", classifies=True, biases=True, linear_model=False,
        shift_label=lambda c: f"documentation to {TEXT_SHIFT_LABELS[c.text_shift]}",
        other_params=lambda c: text_other_params(c.hidden, c.blocks, c.context),
        model_label=lambda c: (f"a transformer of {c.blocks} block(s), width {c.hidden}, {c.heads} heads, context "
                               f"{c.context} characters"),
        problem=lambda c: (None if c.hidden % c.heads == 0 else
                           f"the hidden size ({c.hidden}) must be a multiple of the heads ({c.heads})")),
}


def spec(values: Any) -> TaskSpec:
    """The TaskSpec of a config (or of settings with its attributes)."""
    return TASK_SPECS[values.task]


def rank_limit(values: Any) -> int:
    """The largest rank the adapted layers of `values` allow: the smallest dimension of an adapted layer."""
    return min(min(shape) for shape in spec(values).adapted_shapes(values).values())
