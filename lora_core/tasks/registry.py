"""The tasks a run can learn, as one table: each kind's data and model (with torch), beside what it is (its
layers, rows, loss and labels: task_specs.py, without torch).

`linear` is the article's regression y = x θ with a two-layer linear model (tasks.py, model.py); `digits` the
8×8 handwritten digits with a ReLU network (digits.py, mlp.py). The loss follows the labels (training.py): mean
squared error for real-valued targets, cross-entropy for class indices.

A new task is one call, `register_task(name, label, spec, kind, estimate)`, from anywhere (tests/test_plugin_task.py
adds one from the test file and runs it through run_experiment, a sweep, the CLI and --save-adapter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..settings.budget import ESTIMATES, Estimate
from ..settings.choices import TASK_LABELS, TASKS
from ..settings.task_specs import CLASSES, PIXELS, TASK_SPECS, TEXT_VOCAB, TaskSpec
from . import digits, text_samples
from .data import Task
from .linear import make_tasks
from .linear_model import TwoLayerLinear
from .mlp import DigitsMLP
from .text_data import make_text_tasks
from .text_model import TinyTransformer


@dataclass(frozen=True)
class TaskKind:
    """A task: `spec` says what it is (every TaskSpec field reads through, e.g. `kind.targets(config)`), the rest
    makes its data and model. `values` below is a config or anything with its attributes."""

    spec: TaskSpec
    make_tasks: Callable[[Any, torch.device | str], tuple[Task, Task]]  # (original, shifted)
    build_model: Callable[[Any, torch.Generator | None], nn.Module]  # fresh weights from the generator
    # A few held-out inputs with both models' predictions for the pages (config, base, merged, shifted task), or
    # None where there is nothing to draw.
    samples: Callable[[Any, nn.Module, nn.Module, Task], list[dict]] | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "spec":  # not set yet (while copying): no recursion
            raise AttributeError(name)
        return getattr(self.spec, name)


def _dtype(values: Any) -> torch.dtype:
    return getattr(torch, values.dtype)


TASK_KINDS: dict[str, TaskKind] = {
    "linear": TaskKind(
        TASK_SPECS["linear"], make_tasks=make_tasks,
        build_model=lambda c, g: TwoLayerLinear(c.d_in, c.hidden, c.d_out, g, _dtype(c))),
    "digits": TaskKind(
        TASK_SPECS["digits"], make_tasks=digits.make_digit_tasks,
        build_model=lambda c, g: DigitsMLP(PIXELS, c.hidden, CLASSES, g, _dtype(c)), samples=digits.sample_grid),
    "text": TaskKind(
        TASK_SPECS["text"], make_tasks=make_text_tasks,
        build_model=lambda c, g: TinyTransformer(len(TEXT_VOCAB), c.hidden, c.blocks, c.heads, c.context, g,
                                                 _dtype(c)), samples=text_samples.continuations),
}


def kind(values: Any) -> TaskKind:
    """The TaskKind of a config (or of settings with its attributes)."""
    return TASK_KINDS[values.task]


def register_task(name: str, label: str, spec: TaskSpec, task_kind: TaskKind,
                  estimate: Callable[[Any], Estimate]) -> None:
    """Add a task, everything about it in one call: its name and label (the `task` setting's choices, the
    CLI's --task, the Playground's menu), what it is (`spec`, no torch), its data and model (`task_kind`) and its
    budget's estimator (an upper bound on its peak memory: the scheduler admits by it)."""
    if name in TASK_KINDS:
        raise ValueError(f"a task named {name!r} exists already")
    TASKS.append(name)
    TASK_LABELS[name] = label
    TASK_SPECS[name] = spec
    TASK_KINDS[name] = task_kind
    ESTIMATES[name] = estimate


def unregister_task(name: str) -> None:
    """Take a registered task away again (a test, or a notebook trying a task out)."""
    TASKS.remove(name)
    for table in (TASK_LABELS, TASK_SPECS, TASK_KINDS, ESTIMATES):
        table.pop(name, None)
