"""LoRA's variants as one table: what turns each on, whether the fast path stays exact with it, and how PEFT
spells it. The computations live where they act: the scaling below, the initialisations in inits.py, DoRA's
layer in dora.py, LoRA+'s learning rates in `optimizer_groups` below.

    rsLoRA  s = α/√r instead of α/r (Kalajdzievski 2023)
    DoRA    W' = m · (W + sBA) / ‖W + sBA‖ per output row, m trained (Liu et al. 2024)
    PiSSA   A, B from W's top-r singular triplets, the base frozen as the residual (Meng et al. 2024)
    OLoRA   A, B from W = QR, the base frozen as the residual (Büyükakyüz 2024)
    LoRA+   B's learning rate λ times A's (Hayou et al. 2024)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .choices import INITS_FROM_WEIGHTS, METHOD_SET_LABELS, METHOD_SETS  # noqa: F401 - re-exported

if TYPE_CHECKING:  # types only: variants.py needs no torch, so that validating a config does not load it
    import torch.nn as nn

    from .config import ExperimentConfig


def lora_scaling(alpha: float, rank: int, use_rslora: bool = False) -> float:
    """s, the factor of B A: α / r, or α / √r with rsLoRA (PEFT's `scaling`)."""
    return alpha / math.sqrt(rank) if use_rslora else alpha / rank


@dataclass(frozen=True)
class Variant:
    name: str
    on: Callable[[ExperimentConfig], bool]  # whether a LoRA config uses it
    fast: bool  # whether the fast path (fast.py) stays exact with it
    what_to_see: str  # what a learner should look for (Playground, README)


VARIANTS = (
    Variant("rsLoRA", lambda c: c.use_rslora, True,
            "at r = 1 nothing changes; at larger r the update is √r times larger than plain LoRA's at the same α"),
    Variant("DoRA", lambda c: c.use_dora, False,
            "ΔW = W' − W is no longer of rank ≤ r: rescaling every row of W adds up to min(d_in, d_out) "
            "directions, and the magnitude vector adds d_out trainable numbers per layer"),
    Variant("PiSSA", lambda c: c.init == "pissa", True,
            "training starts from W's strongest directions, and the change ΔW from the original W has rank "
            "≤ 2r (the trained s·BA minus the s·B₀A₀ it started from)"),
    Variant("OLoRA", lambda c: c.init == "olora", True,
            "like PiSSA, but from an orthonormal basis (QR) of W's first columns"),
    Variant("LoRA+", lambda c: c.lr_ratio != 1.0, True,
            "B moves λ times faster than A: a large ratio can lower the loss sooner, or overshoot"),
)


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


def peft_flags(use_rslora: bool, use_dora: bool, init: str) -> dict[str, Any]:
    """The keys of PEFT's LoraConfig that say which variant an adapter is (export.py writes them)."""
    init_lora_weights = init if init in INITS_FROM_WEIGHTS else True  # a random A is overwritten on loading
    return {"use_rslora": use_rslora, "use_dora": use_dora, "init_lora_weights": init_lora_weights}


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
    rank ≤ 2r) or 'lora' (s·B·A, rank ≤ r)."""
    if config.method == "full":
        return "full"
    if config.use_dora:
        return "dora"
    return "from_weights" if config.init in INITS_FROM_WEIGHTS else "lora"


# How many directions the end-to-end map W2·W1 can change by, per kind of ΔW (delta_kind): adapters of rank r on
# both layers change it by W2·ΔW1 + ΔW2·W1' (rank ≤ 2r; 4r when PiSSA/OLoRA's ΔW already has 2r); DoRA's row
# scaling has no such bound (None). Full fine-tuning reaches every map of rank ≤ hidden (analysis.loss_floor of
# the target itself).
REACH = {"lora": lambda c: 2 * c.rank, "from_weights": lambda c: 4 * c.rank, "dora": lambda c: None,
         "full": lambda c: c.hidden}

def method_settings(name: str, config: ExperimentConfig) -> dict[str, Any]:
    """The settings of sweep method `name` on top of `config`: every variant's setting is set, so a member
    called 'lora' is plain LoRA whatever the Playground had ticked (its random initialisation is kept)."""
    plain = {"use_rslora": False, "use_dora": False, "lr_ratio": 1.0, "path": "auto",
             "init": config.init if config.init not in INITS_FROM_WEIGHTS else "kaiming"}
    return {**plain, **METHOD_SETS[name]}
