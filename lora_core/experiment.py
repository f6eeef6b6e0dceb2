"""One experiment end to end: pretrain on the original task, fine-tune on the shifted one, merge, measure.

    result = run_experiment(preset("article"), on_progress=print)
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn as nn

from . import analysis, cache, fast
from .config import ConfigError, ExperimentConfig
from .export import save_adapter
from .layers import LoRALinear, add_lora, merge_lora
from .model import TARGETS, TwoLayerLinear, layer_shapes
from .results import LOSS_KEYS, ExperimentResult, LayerSpectra, PhaseHistory
from .tasks import Task, make_tasks, rng
from .training import ProgressCallback, cpu_threads, describe_device, mse, pick_device, threads_for, train

# What to tell a person whose run diverged.
DIVERGED_HINT = "the loss became infinite or NaN: lower the learning rate or α and train again"
WORSE_HINT = ("fine-tuning ended with a higher loss on the shifted task than the base model had: "
              "the steps were too large; lower the learning rate or α")


def pretrain(config: ExperimentConfig, task: Task, device: torch.device,
             on_progress: ProgressCallback | None = None) -> tuple[str, PhaseHistory, nn.Module]:
    """Train all weights of a fresh model on the original task. Returns (status, history, model)."""
    generator = rng(config.seed, "model")
    model = TwoLayerLinear(config.d_in, config.hidden, config.d_out, generator, getattr(torch, config.dtype))
    model.to(device)
    status, history = train(model, task.train, task.eval, epochs=config.pretrain_epochs,
                            batch_size=config.batch_size, lr=config.lr, seed=config.seed, phase="pretrain",
                            on_progress=on_progress)
    return status, history, model


def finetune(config: ExperimentConfig, base: nn.Module, task: Task,
             on_progress: ProgressCallback | None = None) -> tuple[str, PhaseHistory, nn.Module, str]:
    """Fine-tune a copy of `base` on the shifted task. Returns (status, history, model, path that ran)."""
    model = copy.deepcopy(base)
    kwargs = dict(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                  phase="finetune", on_progress=on_progress)
    if config.method == "full":
        model.requires_grad_(True)
        status, history = train(model, task.train, task.eval, **kwargs)
        return status, history, model, "autograd"
    add_lora(model, TARGETS, config.rank, config.alpha, config.init, rng(config.seed, "adapter"))
    # 'auto' takes the fast path (fast.py: same batches, same Adam, same losses) whenever it applies.
    if config.path != "autograd" and fast.applies(model):
        status, history = fast.train_fast(model, task.train, task.eval, **kwargs)
        return status, history, model, "fast"
    if config.path == "fast":
        raise ConfigError("path 'fast' does not apply to this model; use path auto or autograd")
    status, history = train(model, task.train, task.eval, **kwargs)
    return status, history, model, "autograd"


def spectra(base: nn.Module, tuned: nn.Module, merged: nn.Module) -> dict[str, LayerSpectra]:
    """Per layer: ΔW's singular values from the factors and from the merged weights, and each weight's."""
    out = {}
    for name in TARGETS:
        before = base.get_submodule(name).weight
        after = merged.get_submodule(name).weight
        layer = tuned.get_submodule(name)
        factored = (analysis.factored_singular_values(layer.lora_B, layer.lora_A, layer.scaling).tolist()
                    if isinstance(layer, LoRALinear) else [])
        out[name] = LayerSpectra(factored, analysis.singular_values(after - before).tolist(),
                                 analysis.singular_values(before).tolist(), analysis.singular_values(after).tolist())
    return out


def run_experiment(config: ExperimentConfig, on_progress: ProgressCallback | None = None,
                   save_adapter_to: str | Path | None = None) -> ExperimentResult:
    """Pretrain, fine-tune, merge and measure. `on_progress` sees every epoch; returning False cancels.

    With `save_adapter_to`, a finished LoRA run writes its adapter there in PEFT's format (see export.py).
    """
    device = pick_device(config.device, config.dtype)
    shapes = layer_shapes(config.d_in, config.hidden, config.d_out)
    with cpu_threads(device, threads_for(sum(analysis.full_param_count(*shape) for shape in shapes.values()))):
        return _run(config, device, on_progress, save_adapter_to)


def _run(config: ExperimentConfig, device: torch.device, on_progress: ProgressCallback | None,
         save_adapter_to: str | Path | None) -> ExperimentResult:
    original, shifted = make_tasks(config, device)
    result = ExperimentResult(
        config=config.to_dict(), status="ok", device=describe_device(device), path="autograd",
        history={"pretrain": PhaseHistory(), "finetune": PhaseHistory()},
        losses=dict.fromkeys(LOSS_KEYS),
        merge_max_abs_diff=None, params=analysis.param_counts(layer_shapes(config.d_in, config.hidden, config.d_out),
                                                              config.rank),
        spectra={}, timings={"pretrain_s": 0.0, "finetune_s": 0.0, "analysis_s": 0.0})

    start = time.perf_counter()
    # A base pretrained before with the same settings comes from the cache (cache.py), its history replayed.
    result.status, result.history["pretrain"], base, result.pretrain_cached = cache.cached_pretrain(
        config, original, device, pretrain, on_progress)
    result.timings["pretrain_s"] = time.perf_counter() - start
    if result.status != "ok":
        return _stopped(result, "pretraining")
    result.losses["base_on_original"] = mse(base, original.eval)
    result.losses["base_on_shifted"] = mse(base, shifted.eval)

    start = time.perf_counter()
    result.status, result.history["finetune"], tuned, result.path = finetune(config, base, shifted, on_progress)
    _sync(device)
    result.timings["finetune_s"] = time.perf_counter() - start
    if result.status != "ok":
        return _stopped(result, "fine-tuning")

    start = time.perf_counter()
    result.losses["adapter_on_shifted"] = mse(tuned, shifted.eval)
    merged = merge_lora(copy.deepcopy(tuned))
    result.losses["merged_on_shifted"] = mse(merged, shifted.eval)
    if result.losses["merged_on_shifted"] > result.losses["base_on_shifted"]:
        result.message = WORSE_HINT
    if config.method == "lora":
        result.merge_max_abs_diff = analysis.max_abs_diff(tuned, merged, shifted.eval.x)
    result.spectra = spectra(base, tuned, merged)
    result.timings["analysis_s"] = time.perf_counter() - start
    if save_adapter_to is not None and config.method == "lora":
        save_adapter(tuned, save_adapter_to)
    return result


def _stopped(result: ExperimentResult, phase: str) -> ExperimentResult:
    epochs = len(result.history["finetune" if phase == "fine-tuning" else "pretrain"].train_loss)
    if result.status == "diverged":
        result.message = f"{phase} diverged at epoch {epochs}: {DIVERGED_HINT}"
    else:
        result.message = f"cancelled during {phase} after {epochs} epoch(s)"
    return result


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work so that timings measure the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
