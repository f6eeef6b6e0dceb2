"""The variants' torch side, registered beside their facts (settings/variants.py): the adapter layer classes by
name, and the one call that adds a variant.

A new variant is one call, `register_variant(variant, initialiser=..., layer=...)`, from anywhere: its facts
join `settings.variants.VARIANTS` (names, the fast path's eligibility, ΔW's kind, PEFT's flags), an initialiser
joins the `init` setting's choices and inits.INITIALISERS, a layer class joins LAYERS. tests/test_plugin_variant.py
adds one from its test file and runs it through run_experiment, a sweep, the CLI and --save-adapter.
"""

from __future__ import annotations

from ..settings.choices import INIT_LABELS, INITS
from ..settings.variants import VARIANTS, Variant
from .dora import DoRALinear
from .inits import INITIALISERS, Initialiser
from .lora_layer import LoRALinear

# The adapter layer classes by name (Variant.layer): plain LoRA's, and DoRA's with its magnitude vector.
LAYERS: dict[str, type[LoRALinear]] = {"lora": LoRALinear, "dora": DoRALinear}


def register_variant(variant: Variant, initialiser: Initialiser | None = None, label: str | None = None,
                     layer: type[LoRALinear] | None = None) -> None:
    """Add a variant, everything about it in one call: its facts (`variant`), and where it needs them an
    initialiser (under `variant.init`, shown as `label` in the menus) and a layer class (under `variant.layer`)."""
    if any(v.name == variant.name for v in VARIANTS):
        raise ValueError(f"a variant named {variant.name!r} exists already")
    if (initialiser is None) != (variant.init is None) or (layer is None) != (variant.layer is None):
        raise ValueError(f"variant {variant.name!r}: give an initialiser exactly when it names an init, and a "
                         "layer class exactly when it names a layer")
    if variant.init is not None:
        INITS.append(variant.init)
        INIT_LABELS[variant.init] = label or variant.name
        INITIALISERS[variant.init] = initialiser
    if variant.layer is not None:
        LAYERS[variant.layer] = layer
    VARIANTS.append(variant)


def unregister_variant(name: str) -> None:
    """Take a registered variant away again (a test, or a notebook trying one out)."""
    variant = next(v for v in VARIANTS if v.name == name)
    VARIANTS.remove(variant)
    if variant.init is not None:
        INITS.remove(variant.init)
        INIT_LABELS.pop(variant.init, None)
        INITIALISERS.pop(variant.init, None)
    if variant.layer is not None:
        LAYERS.pop(variant.layer, None)
