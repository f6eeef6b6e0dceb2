"""Adapter files in Hugging Face PEFT's format, so `peft.PeftModel.from_pretrained` loads what we train.

A folder gets:
- `adapter_config.json`: r, lora_alpha, target_modules and the variant's flags, `use_rslora`, `use_dora` and
  `init_lora_weights` (`"pissa"`, `"olora"`, else `true`: a random start is overwritten on loading);
- `adapter_model.safetensors`: `base_model.model.<layer>.lora_A.weight` [r, d_in], `...lora_B.weight`
  [d_out, r] and, with DoRA, `...lora_magnitude_vector` [d_out] (PEFT's keys);
- `base_model.safetensors` (`layer1.weight`, ... and biases): the frozen base the adapter was trained on, so
  that base + adapter gives the project's outputs with no library at all. For PiSSA and OLoRA that is the
  residual W − s·B₀A₀;
- for PiSSA and OLoRA also `original_base_model.safetensors`, the pretrained W. PEFT, reading
  `init_lora_weights: "pissa"`, recomputes the residual from the base it is given, so `PeftModel.from_pretrained`
  needs the original weights (tests/test_variants.py loads both ways).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..settings.variants import peft_flags, starts_from_weights
from .attach import lora_layers

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_WEIGHTS = "base_model.safetensors"
ORIGINAL_BASE_WEIGHTS = "original_base_model.safetensors"
PEFT_PREFIX = "base_model.model."


class _LayerSettings(NamedTuple):
    """The LoRA settings a set of layers was made with, for the variants' table (which reads a config's)."""

    use_rslora: bool
    use_dora: bool
    init: str
    method: str = "lora"
    lr_ratio: float = 1.0  # LoRA+ is the optimizer's, not the adapter's: the files do not say it


def _one(values: set, what: str):
    if len(values) != 1:
        raise ValueError(f"all adapters must share one {what} to be saved in PEFT's format")
    return values.pop()


def save_adapter(model: nn.Module, folder: str | Path, original: nn.Module | None = None) -> Path:
    """Write the LoRA adapters of `model` and its (unmerged) base weights to `folder`; returns the folder.

    `original`, the model before any adapter was added, is needed for PiSSA and OLoRA (see the docstring)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers to save")
    if any(layer.merged for layer in layers.values()):
        raise ValueError("unmerge the adapters before saving: the base weights must be the original ones")
    rank = _one({layer.rank for layer in layers.values()}, "rank")
    alpha = _one({layer.alpha for layer in layers.values()}, "alpha")
    use_rslora = _one({layer.use_rslora for layer in layers.values()}, "scaling rule")
    layer_kind = _one({layer.kind for layer in layers.values()}, "kind of layer")
    init = _one({layer.init for layer in layers.values()}, "initialisation")
    # the settings these layers were made with, as far as the variants' table reads them
    made_with = _LayerSettings(use_rslora=use_rslora, use_dora=layer_kind == "dora", init=init)
    from_weights = starts_from_weights(made_with)
    if from_weights and original is None:
        raise ValueError(f"an adapter initialised with {init} needs the original model to be saved")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": None, "inference_mode": True,
        "r": rank, "lora_alpha": alpha, "target_modules": sorted(layers), "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, **peft_flags(made_with),
    }
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach().cpu().contiguous()
        for key, tensor in layer.extra_tensors().items():
            tensors[f"{PEFT_PREFIX}{name}.{key}"] = tensor.cpu().contiguous()
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    save_file(_plain_state(model), str(folder / BASE_WEIGHTS))
    if from_weights:
        save_file(_plain_state(original), str(folder / ORIGINAL_BASE_WEIGHTS))
    return folder


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base's state, every layer and bias, under the plain model's names ('layer1.base.weight' ->
    'layer1.weight'): what a base model loads before PEFT adds the adapter."""
    return {name.replace(".base.", "."): tensor.detach().cpu().contiguous()
            for name, tensor in model.state_dict().items() if ".lora_" not in name}


def load_base_weights(folder: str | Path, original: bool = False) -> dict:
    """The base weights saved beside an adapter, as a state dict for the task's model: the base the
    adapter was trained on, or with `original` the pretrained weights of a PiSSA/OLoRA adapter."""
    return load_file(str(Path(folder) / (ORIGINAL_BASE_WEIGHTS if original else BASE_WEIGHTS)))
