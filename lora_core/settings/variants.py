"""LoRA's variants as classes in one registry, `VARIANTS`, as PEFT's `LoraVariant`s are: what turns each on and
every way it differs from plain LoRA (the fast path's eligibility, the kind of ΔW it makes, the layer and the
initialisation it needs, PEFT's flags). Their torch side is registered by name beside them: the initialisations
in adapters/inits.py, DoRA's layer in adapters/dora.py (adapters/registry.py adds a new variant in one call).

    rsLoRA  s = α/√r instead of α/r (Kalajdzievski 2023)
    DoRA    W' = m · (W + sBA) / ‖W + sBA‖ per output row, m trained (Liu et al. 2024)
    PiSSA   A, B from W's top-r singular triplets, the base frozen as the residual (Meng et al. 2024)
    OLoRA   A, B from W = QR, the base frozen as the residual (Büyükakyüz 2024)
    LoRA+   B's learning rate λ times A's (Hayou et al. 2024): `optimizer_groups` below
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .choices import METHOD_SET_LABELS, METHOD_SETS  # noqa: F401 - re-exported

if TYPE_CHECKING:  # types only: variants.py needs no torch, so that validating a config does not load it
    import torch.nn as nn

    from .config import ExperimentConfig


def lora_scaling(alpha: float, rank: int, use_rslora: bool = False) -> float:
    """s, the factor of B A: α / r, or α / √r with rsLoRA (PEFT's `scaling`)."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


class Variant:
    """One of LoRA's variants, as PEFT's `LoraVariant` classes are: what turns it on, and every way it differs from
    plain LoRA. The defaults are plain LoRA's; a variant overrides what it changes. Its torch side (an
    initialiser, a layer class) is registered beside it by name (adapters/registry.register_variant), so this
    table stays importable without torch."""

    name: str = "LoRA"
    what_to_see: str = ""  # what a learner should look for (Playground, README)
    fast: bool = True  # whether the fast path (fast.py) stays exact with it
    init: str | None = None  # the initialisation it is (the `init` setting's value), if it is one
    from_weights: bool = False  # whether B A starts from W, the base frozen as the residual (ΔW has rank ≤ 2r)
    layer: str | None = None  # the adapter layer it needs (adapters/registry.LAYERS), None: LoRA's own
    delta: str | None = None  # the kind of ΔW it makes (REACH below), None: unchanged

    def on(self, config: ExperimentConfig) -> bool:
        """Whether a LoRA config uses it; an initialisation variant is on when the config starts with it."""
        return self.init is not None and config.init == self.init

    def peft_flags(self, config: ExperimentConfig) -> dict[str, Any]:
        """The keys of PEFT's LoraConfig that say this variant (peft_format writes them)."""
        return {"init_lora_weights": self.init} if self.from_weights else {}

    def extra_trainable(self, d_in: int, d_out: int) -> int:
        """The numbers it trains on one adapted d_in -> d_out layer beyond A and B."""
        return 0


class RsLoRA(Variant):
    name = "rsLoRA"
    what_to_see = "at r = 1 nothing changes; at larger r the update is √r times larger than plain LoRA's at the same α"

    def on(self, config: ExperimentConfig) -> bool:
        return config.use_rslora

    def peft_flags(self, config: ExperimentConfig) -> dict[str, Any]:
        return {"use_rslora": True}


class DoRA(Variant):
    name, fast, layer, delta = "DoRA", False, "dora", "dora"
    what_to_see = ("ΔW = W' − W is no longer of rank ≤ r: rescaling every row of W adds up to min(d_in, d_out) "
                   "directions, and the magnitude vector adds d_out trainable numbers per layer")

    def on(self, config: ExperimentConfig) -> bool:
        return config.use_dora

    def peft_flags(self, config: ExperimentConfig) -> dict[str, Any]:
        return {"use_dora": True}

    def extra_trainable(self, d_in: int, d_out: int) -> int:
        return d_out  # a magnitude per output row


class PiSSA(Variant):
    name, init, from_weights, delta = "PiSSA", "pissa", True, "from_weights"
    what_to_see = ("training starts from W's strongest directions, and the change ΔW from the original W has rank "
                   "≤ 2r (the trained s·BA minus the s·B₀A₀ it started from)")


class OLoRA(Variant):
    name, init, from_weights, delta = "OLoRA", "olora", True, "from_weights"
    what_to_see = "like PiSSA, but from an orthonormal basis (QR) of W's first columns"


class LoRAPlus(Variant):
    name = "LoRA+"
    what_to_see = "B moves λ times faster than A: a large ratio can lower the loss sooner, or overshoot"

    def on(self, config: ExperimentConfig) -> bool:
        return config.lr_ratio != 1.0


# The registry: every variant, in the order names join ('LoRA + DoRA + LoRA+'). A new one is one entry, added
# with adapters/registry.register_variant (tests/test_plugin_variant.py adds one from its test file).
VARIANTS: list[Variant] = [RsLoRA(), DoRA(), PiSSA(), OLoRA(), LoRAPlus()]


def notes(config: ExperimentConfig) -> list[str]:
    """'DoRA: what to look for', one per variant in use."""
    return [f"{v.name}: {v.what_to_see}." for v in active(config)]


def active(config: ExperimentConfig) -> list[Variant]:
    """The variants a config uses (none for full fine-tuning)."""
    return [v for v in VARIANTS if v.on(config)] if config.method == "lora" else []


def adapter_name(config: ExperimentConfig) -> str:
    """'LoRA', or 'LoRA + DoRA + LoRA+': the adapter the config's LoRA settings make, whatever its method."""
    return " + ".join(["LoRA", *(v.name for v in VARIANTS if v.on(config))])


def method_name(config: ExperimentConfig) -> str:
    """'full fine-tuning', or the adapter's name."""
    return "full fine-tuning" if config.method == "full" else adapter_name(config)


def not_fast(config: ExperimentConfig) -> list[str]:
    """The variants in use with which the fast path would not be exact."""
    return [v.name for v in active(config) if not v.fast]


def peft_flags(config: ExperimentConfig) -> dict[str, Any]:
    """The keys of PEFT's LoraConfig that say which variant an adapter is (peft_format writes them): plain
    LoRA's values, then each variant's own."""
    flags: dict[str, Any] = {"use_rslora": False, "use_dora": False, "init_lora_weights": True}  # a random A is
    for variant in active(config):  # overwritten on loading, so PEFT's own random init does not matter
        flags.update(variant.peft_flags(config))
    return flags


def starts_from_weights(config: ExperimentConfig) -> bool:
    """Whether a LoRA config's B A starts from W (PiSSA, OLoRA): the frozen base is the residual, ΔW has rank ≤ 2r,
    and the fast paths carry the starting pair along."""
    return any(v.from_weights for v in active(config))


def layer_kind(config: ExperimentConfig) -> str:
    """The adapter layer a config's variants need (adapters/registry.LAYERS): 'lora' unless one asks for its own."""
    return next((v.layer for v in active(config) if v.layer), "lora")


def is_b_group(name: str, param: nn.Parameter) -> bool:
    """PEFT's LoRA+ rule (peft.optimizers.create_loraplus_optimizer): B and every 1-D parameter (DoRA's
    magnitude) take the higher learning rate."""
    return "lora_B" in name or param.ndim == 1


def optimizer_groups(model: nn.Module, lr: float, lr_ratio: float = 1.0) -> list[dict[str, Any]]:
    """Adam's parameter groups for the trainable parameters of `model`: [A's and the rest at lr, B's at
    lr * lr_ratio]; one group when nothing takes the higher rate."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    group_a = [p for n, p in trainable if not is_b_group(n, p)]
    group_b = [p for n, p in trainable if is_b_group(n, p)]
    groups = [{"params": group_a, "lr": lr}, {"params": group_b, "lr": lr * lr_ratio}]
    return [g for g in groups if g["params"]]


def delta_kind(config: ExperimentConfig) -> str:
    """What ΔW = W_merged − W (from the pretrained W) is for this config:
    'full' (any matrix), 'dora' (rows rescaled: up to full rank), 'from_weights' (PiSSA, OLoRA: s(BA − B₀A₀),
    rank ≤ 2r) or 'lora' (s·B·A, rank ≤ r): the first variant in use that changes it says."""
    if config.method == "full":
        return "full"
    return next((v.delta for v in active(config) if v.delta), "lora")


# How many directions the end-to-end map W2·W1 can change by, per kind of ΔW (delta_kind): adapters of rank r on
# both layers change it by W2·ΔW1 + ΔW2·W1' (rank ≤ 2r; 4r when PiSSA/OLoRA's ΔW already has 2r); DoRA's row
# scaling has no such bound (None). Full fine-tuning reaches every map of rank ≤ hidden (analysis.loss_floor of
# the target itself).
REACH = {"lora": lambda c: 2 * c.rank, "from_weights": lambda c: 4 * c.rank, "dora": lambda c: None,
         "full": lambda c: c.hidden}

def method_settings(name: str, config: ExperimentConfig) -> dict[str, Any]:
    """The settings of sweep method `name` on top of `config`: every variant's setting is set, so a member
    called 'lora' is plain LoRA whatever the Playground had ticked (its random initialisation is kept)."""
    from_weights = {v.init for v in VARIANTS if v.from_weights}
    plain = {"use_rslora": False, "use_dora": False, "lr_ratio": 1.0, "path": "auto",
             "init": config.init if config.init not in from_weights else "kaiming"}
    return {**plain, **METHOD_SETS[name]}
