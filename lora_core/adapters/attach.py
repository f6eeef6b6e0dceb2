"""Putting adapters on a model and taking them off: LoRA (or DoRA) layers in place of its `nn.Linear`s, merged
back into plain ones after training."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn as nn

from ..settings.config import ExperimentConfig
from ..settings.variants import layer_kind
from ..tasks.data import rng
from ..tasks.registry import kind
from .lora_layer import LoRALinear
from .registry import LAYERS


def add_lora(model: nn.Module, targets: Iterable[str], rank: int, alpha: float, init: str = "kaiming",
             generator: torch.Generator | None = None, *, use_rslora: bool = False,
             use_dora: bool = False, layer: str = "lora") -> dict[str, LoRALinear]:
    """Replace the named `nn.Linear` submodules of `model` by LoRA layers (DoRA layers with `use_dora`, or the
    registered layer class `layer`: registry.LAYERS), freeze everything else.

    Returns the new layers by name. A name that is missing or not an `nn.Linear` raises ValueError.
    """
    layer_class = LAYERS["dora" if use_dora else layer]
    model.requires_grad_(False)
    adapted = {}
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = getattr(parent, child, None)
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"{name!r} is not an nn.Linear of this model")
        adapted[name] = layer_class(layer, rank, alpha, init, generator, use_rslora)
        setattr(parent, child, adapted[name])
    return adapted


def adapted(base: nn.Module, config: ExperimentConfig) -> nn.Module:
    """A copy of `base` with the adapter `config` asks for on the layers its task adapts (its rank, α,
    initialisation from the run's adapter stream, rsLoRA, DoRA), as every path starts from it."""
    model = copy.deepcopy(base)
    add_lora(model, kind(config).targets(config), config.rank, config.alpha, config.init, rng(config.seed, "adapter"),
             use_rslora=config.use_rslora, layer=layer_kind(config))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The LoRA layers of `model` by name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base weight and put the plain `nn.Linear` back; returns `model`."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    return model
