"""Which fine-tuning path runs `config`: every rule for choosing, without torch (validating a config asks it;
paths.py holds the trainers themselves).

Both paths follow the same trajectory (same batches, same Adam, same losses; tests/test_fast.py): `fast` is
the article's model with hand-written gradients (fast.py), `autograd` any model (training.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import variants
from .choices import ConfigError
from .task_specs import spec

if TYPE_CHECKING:
    from .config import ExperimentConfig


def choose_path(config: ExperimentConfig) -> str:
    """The path that fine-tunes `config`: 'fast' where it applies and was not ruled out, else 'autograd'.

    The fast path applies to LoRA on both layers of the linear task's two-layer model with every variant it stays
    exact with (variants.VARIANTS: all but DoRA); fast.applies checks the built model again. `path fast` where it
    does not apply raises ConfigError.
    """
    excluded = variants.not_fast(config)
    linear_model = spec(config).linear_model
    fast_applies = config.method == "lora" and not excluded and linear_model
    if config.path == "fast" and not linear_model:
        raise ConfigError(f"path 'fast' applies only to the linear task's model, not to task {config.task!r}; "
                          "use path auto or autograd")
    if config.path == "fast" and config.method != "lora":
        raise ConfigError(f"path 'fast' applies only to method 'lora', not {config.method!r}; "
                          "use path auto or autograd")
    if config.path == "fast" and excluded:
        raise ConfigError(f"path 'fast' does not apply to {' or '.join(excluded)}; use path auto or autograd")
    return "fast" if fast_applies and config.path != "autograd" else "autograd"
