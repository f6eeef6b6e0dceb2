"""Adapter files in Hugging Face PEFT's format, so `peft.PeftModel.from_pretrained` loads what we train.

A folder gets `adapter_config.json`, `adapter_model.safetensors` (keys `base_model.model.<layer>.lora_A.weight`,
`...lora_B.weight`) and, so the adapter can be applied to the exact base it was trained on,
`base_model.safetensors` (`layer1.weight`, `layer2.weight`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_file, save_file

from .layers import lora_layers

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_WEIGHTS = "base_model.safetensors"
PEFT_PREFIX = "base_model.model."


def save_adapter(model: nn.Module, folder: str | Path) -> Path:
    """Write the LoRA adapters of `model` and its (unmerged) base weights to `folder`; returns the folder."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers to save")
    if any(layer.merged for layer in layers.values()):
        raise ValueError("unmerge the adapters before saving: the base weights must be the original ones")
    ranks = {layer.rank for layer in layers.values()}
    alphas = {layer.alpha for layer in layers.values()}
    if len(ranks) != 1 or len(alphas) != 1:
        raise ValueError("all adapters must share one rank and one alpha to be saved in PEFT's format")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": None, "inference_mode": True,
        "r": ranks.pop(), "lora_alpha": alphas.pop(), "target_modules": sorted(layers), "lora_dropout": 0.0,
        "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": False, "use_dora": False,
    }
    (folder / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach().cpu().contiguous()
    save_file(tensors, str(folder / ADAPTER_WEIGHTS))
    base = {f"{name}.weight": layer.base.weight.detach().cpu().contiguous() for name, layer in layers.items()}
    save_file(base, str(folder / BASE_WEIGHTS))
    return folder


def load_base_weights(folder: str | Path) -> dict:
    """The base weights saved beside an adapter, as a state dict for the two-layer model."""
    return load_file(str(Path(folder) / BASE_WEIGHTS))
