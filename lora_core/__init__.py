"""LoRA Explorer's computation: a config in, a trained, merged and measured run out.

    from . import preset, run_experiment
    result = run_experiment(preset("default", rank=2))
    result.losses, result.history["finetune"].eval_loss, result.spectra["layer1"].delta_merged

The names below are the public API; each loads its module on first use, so that `import lora_core` (and the
command line's refusal of a bad flag) does not load torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# name -> the module that defines it
_PUBLIC = {
    # configuration
    **dict.fromkeys(("ExperimentConfig", "ConfigError", "preset", "make_config", "PRESETS"), "settings.config"),
    # runs and their results
    "run_experiment": "experiment", "ExperimentResult": "settings.results",
    "run_sweep": "sweep", "SweepResult": "sweep",
    # adapters and models
    "LoRALinear": "adapters.lora_layer", "DoRALinear": "adapters.dora",
    "add_lora": "adapters.attach", "merge_lora": "adapters.attach", "save_adapter": "adapters.peft_format",
    "TwoLayerLinear": "tasks.linear_model", "DigitsMLP": "tasks.mlp",
    # plugins: a new task, a new variant
    "register_task": "tasks.registry", "register_variant": "adapters.registry", "Variant": "settings.variants",
    # the inspector
    **dict.fromkeys(("inspect_adapter", "from_path", "AdapterReport", "AdapterError"), "inspector"),
    # what a run costs
    "estimate": "settings.budget",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module the first time it is asked for (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lora_core' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
