"""One experiment end to end: pretrain on the original task, fine-tune on the shifted one, merge, measure.

    result = run_experiment(preset("article"), on_progress=print)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn

from . import cache
from .adapters.attach import adapted, merge_lora
from .adapters.lora_layer import LoRALinear
from .adapters.peft_format import save_adapter
from .measure import analysis
from .measure.dynamics import Dynamics, changed_layers
from .settings import variants
from .settings.budget import has_floor
from .settings.config import ConfigError, ExperimentConfig
from .settings.results import LOSS_KEYS, ExperimentResult, LayerSpectra, PhaseHistory
from .tasks.data import Split, Task, rng
from .tasks.registry import kind
from .training import fast
from .training.batched import Trained
from .training.devices import (
    cpu_threads,
    describe_device,
    pick_device,
    release_freed_memory,
    steady_allocator,
    synchronize,
    threads_for,
)
from .training.loop import CancelCheck, Cancelled, ProgressCallback, held_out_scores, report, train
from .training.trainers import TRAINERS, choose_path

# What to tell a person whose run diverged.
DIVERGED_HINT = "the loss became infinite or NaN: lower the learning rate or α and train again"
WORSE_HINT = ("fine-tuning ended with a higher loss on the shifted task than the base model had: "
              "the steps were too large; lower the learning rate or α")


def pretrain(config: ExperimentConfig, task: Task, device: torch.device,
             on_progress: ProgressCallback | None = None,
             cancel: CancelCheck | None = None) -> tuple[str, PhaseHistory, nn.Module]:
    """Train all weights of a fresh model on the original task. Returns (status, history, model)."""
    model = kind(config).build_model(config, rng(config.seed, "model")).to(device)
    status, history = train(model, task.train, task.eval, epochs=config.pretrain_epochs,
                            batch_size=config.batch_size, lr=config.lr, seed=config.seed, phase="pretrain",
                            on_progress=on_progress, cancel=cancel)
    return status, history, model


class FineTuned(NamedTuple):
    status: str  # one of results.STATUSES
    history: PhaseHistory
    model: nn.Module  # the fine-tuned copy of the base (LoRA layers unmerged)
    path: str  # the path that ran, a key of paths.TRAINERS


def finetune(config: ExperimentConfig, base: nn.Module, task: Task, on_progress: ProgressCallback | None = None,
             cancel: CancelCheck | None = None, trained: Trained | None = None,
             live_dynamics: bool = True) -> FineTuned:
    """Fine-tune a copy of `base` on the shifted task, on the path `path_rule.choose_path` picks, with the LoRA
    variants the config turns on (variants.py). With `trained` (a sweep's batched fine-tune, batched.py), the
    adapter is built the same way, its trained parameters installed and its history replayed; its path is the
    batch's ('batched', 'fast-batched'). The dynamics (measure/dynamics.py) are measured after every recorded
    epoch and passed to `on_progress` with it; without `live_dynamics` (a sweep's member, whose page draws no
    live chart of them) they are measured together after the run: the same numbers, to rounding."""
    if trained is not None:
        model = adapted(base, config)
        with torch.no_grad():
            for name, tensor in trained.tensors.items():
                model.get_parameter(name).copy_(tensor)
        history, done = PhaseHistory(), trained.history
        accuracies = done.eval_accuracy or [None] * len(done.eval_loss)
        recorded = {epoch: i for i, epoch in enumerate(done.spectra_epochs)}
        for epoch, scores in enumerate(zip(done.train_loss, done.eval_loss, accuracies, strict=True), 1):
            dynamics = done.dynamics_at(recorded[epoch]) if epoch in recorded else None
            if report(on_progress, history, "finetune", epoch, config.epochs, *scores, dynamics) == "cancelled":
                return FineTuned("cancelled", history, model, trained.path)
        return FineTuned(trained.status, history, model, trained.path)
    path = choose_path(config)
    if config.method == "full":
        model = copy.deepcopy(base).requires_grad_(True)
    else:
        model = adapted(base, config)
        if path == "fast" and not fast.applies(model):
            raise RuntimeError("choose_path picked the fast path for a model fast.py was not written for")
    lr_ratio = config.lr_ratio if config.method == "lora" else 1.0
    dynamics = Dynamics(config, base, task)
    status, history = TRAINERS[path](model, task.train, task.eval, epochs=config.epochs,
                                     batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                                     phase="finetune", on_progress=on_progress, cancel=cancel, lr_ratio=lr_ratio,
                                     optimizer=config.optimizer,
                                     record=dynamics.record if live_dynamics else dynamics.keep)
    if not live_dynamics:
        dynamics.measure_kept(history, config.epochs)
    return FineTuned(status, history, model, path)


spectra_layers = changed_layers  # the layers whose spectra a run reports: those fine-tuning changes


def spectra(base: nn.Module, tuned: nn.Module, merged: nn.Module, names: tuple[str, ...]) -> dict[str, LayerSpectra]:
    """Per layer in `names`: ΔW's singular values from the factors and from the merged weights, and each weight's."""
    out = {}
    for name in names:
        before = base.get_submodule(name).weight
        after = merged.get_submodule(name).weight
        layer = tuned.get_submodule(name)
        factored = (analysis.factored_singular_values(*layer.change_factors(), layer.scaling).tolist()
                    if isinstance(layer, LoRALinear) else [])
        out[name] = LayerSpectra(factored, analysis.singular_values(after - before).tolist(),
                                 analysis.singular_values(before).tolist(), analysis.singular_values(after).tolist())
    return out


Inspect = Callable[[ExperimentResult, nn.Module, nn.Module, nn.Module], None]


def run_experiment(config: ExperimentConfig, on_progress: ProgressCallback | None = None,
                   save_adapter_to: str | Path | None = None, cancel: CancelCheck | None = None,
                   inspect: Inspect | None = None, trained: Trained | None = None,
                   live_dynamics: bool = True, tasks: tuple[Task, Task] | None = None) -> ExperimentResult:
    """Pretrain, fine-tune, merge and measure. `on_progress` sees every epoch; returning False cancels, and
    so does `cancel()` returning True (asked before every mini-batch, so within one step).

    With `save_adapter_to`, a finished LoRA run writes its adapter there in PEFT's format (see export.py).
    `inspect(result, base, tuned, merged)` is called on a finished run, for analyses that need the models
    (sweep.py); `trained` installs a fine-tune done elsewhere, and `live_dynamics` False measures the
    fine-tune's dynamics after it rather than with each epoch (see finetune). `tasks`, (original, shifted) as
    `make_tasks` makes them for this config, spares making them again (a sweep's members of one seed share them).
    """
    steady_allocator()  # so that the memory budget's estimate bounds this run (devices.py)
    device = pick_device(config.device, config.dtype)
    shapes = kind(config).layer_shapes(config)
    with cpu_threads(device, threads_for(sum(analysis.full_param_count(*shape) for shape in shapes.values()))):
        return _run(config, device, on_progress, save_adapter_to, cancel, inspect, trained, live_dynamics, tasks)


def _run(config: ExperimentConfig, device: torch.device, on_progress: ProgressCallback | None,
         save_adapter_to: str | Path | None, cancel: CancelCheck | None, inspect: Inspect | None,
         trained: Trained | None, live_dynamics: bool = True,
         tasks: tuple[Task, Task] | None = None) -> ExperimentResult:
    task = kind(config)
    original, shifted = tasks or task.make_tasks(config, device)
    result = ExperimentResult(
        config=config.to_dict(), status="ok", device=describe_device(device), path="autograd",
        history={"pretrain": PhaseHistory(), "finetune": PhaseHistory()},
        losses=dict.fromkeys(LOSS_KEYS),
        merge_max_abs_diff=None, params=analysis.config_param_counts(config),
        accuracies=dict.fromkeys(LOSS_KEYS) if task.classifies else {},
        spectra={}, timings={"pretrain_s": 0.0, "finetune_s": 0.0, "analysis_s": 0.0})

    start = time.perf_counter()
    # A base pretrained before with the same settings comes from the cache (cache.py), its history replayed.
    result.status, result.history["pretrain"], base, result.pretrain_cached = cache.cached_pretrain(
        config, original, device, pretrain, on_progress, cancel)
    result.timings["pretrain_s"] = time.perf_counter() - start
    release_freed_memory()  # each phase starts with what the last one freed given back (devices.py)
    if result.status != "ok":
        return _stopped(result, "pretraining")
    try:
        for key, split in (("base_on_original", original.eval), ("base_on_shifted", shifted.eval)):
            _score(result, key, base, split, cancel)
    except Cancelled:
        result.status = "cancelled"
        return _stopped(result, "pretraining")

    start = time.perf_counter()
    result.status, result.history["finetune"], tuned, result.path = finetune(config, base, shifted, on_progress,
                                                                             cancel, trained, live_dynamics)
    synchronize(device)
    result.timings["finetune_s"] = time.perf_counter() - start
    release_freed_memory()
    if result.status != "ok":
        return _stopped(result, "fine-tuning")

    start = time.perf_counter()
    try:
        merged = _measure(result, config, base, tuned, original, shifted, cancel)
    except Cancelled:
        result.status, result.spectra = "cancelled", {}
        return _stopped(result, "fine-tuning")
    if inspect is not None:
        inspect(result, base, tuned, merged)
    result.timings["analysis_s"] = time.perf_counter() - start
    if save_adapter_to is not None and config.method == "lora":
        save_adapter(tuned, save_adapter_to, original=base)
    return result


def _measure(result: ExperimentResult, config: ExperimentConfig, base: nn.Module, tuned: nn.Module, original: Task,
             shifted: Task, cancel: CancelCheck | None) -> nn.Module:
    """The adapter's and the merged model's losses and accuracies (on the shifted task, and on the original one:
    forgetting), the merge check, the spectra and the floor, into `result`; returns the merged model."""
    _score(result, "adapter_on_shifted", tuned, shifted.eval, cancel)
    merged = merge_lora(copy.deepcopy(tuned))
    _score(result, "merged_on_shifted", merged, shifted.eval, cancel)
    _score(result, "merged_on_original", merged, original.eval, cancel)
    if result.losses["merged_on_shifted"] > result.losses["base_on_shifted"]:
        result.message = WORSE_HINT
    if config.method == "lora":
        result.merge_max_abs_diff = analysis.max_abs_diff(tuned, merged, shifted.eval.x)
    result.spectra = spectra(base, tuned, merged, spectra_layers(config))
    if kind(config).linear_model:  # the shift is a matrix Δθ with a spectrum, the floor a tail of one
        result.shift_spectrum = analysis.shift_singular_values(config)
        result.floor, result.floor_noise = floor(config, base, shifted)
    if kind(config).samples is not None:  # a few held-out inputs with both models' predictions, for the pages
        result.samples = kind(config).samples(config, base, merged, shifted)
    return merged


def _score(result: ExperimentResult, key: str, model: nn.Module, split: Split, cancel: CancelCheck | None) -> None:
    """`model`'s held-out loss on `split` into result.losses[key], and its accuracy for a classification task."""
    result.losses[key], accuracy = held_out_scores(model, split, cancel=cancel)
    if accuracy is not None:
        result.accuracies[key] = accuracy


def floor(config: ExperimentConfig, base: nn.Module, shifted: Task) -> tuple[float | None, float | None]:
    """(the lowest expected loss within this method's reach, one standard deviation of the held-out loss there).

    A lower bound (variants.REACH); for LoRA started at B = 0 it is reached when the pretrained layers are
    invertible (square, full rank), where any change of the map by 2r directions is within reach."""
    if not has_floor(config):
        return None, None
    kind = variants.delta_kind(config)
    directions = variants.REACH[kind](config)
    if kind == "full":  # any map of rank <= hidden: the target's own tail
        values = analysis.singular_values(shifted.theta).tolist()
    else:
        values = analysis.singular_values(analysis.end_to_end_error(
            base.layer1.weight, base.layer2.weight, shifted.theta)).tolist()
    return (analysis.loss_floor(values, directions, config.d_out),
            analysis.floor_noise(values, directions, config.d_out, config.n_eval))


def base_cached(config: ExperimentConfig) -> bool:
    """Whether a run of `config` would find its pretrained base kept (its estimate then drops the pretraining)."""
    try:
        device = pick_device(config.device, config.dtype)
    except ConfigError:  # a device this machine lacks: the run itself will say so
        return False
    return cache.has(cache.pretrain_key(config, device, pretrain))


def prepared(config: ExperimentConfig, device: torch.device, on_progress: ProgressCallback | None = None,
             cancel: CancelCheck | None = None,
             tasks: tuple[Task, Task] | None = None) -> tuple[str, Task, Task, nn.Module]:
    """(status, original task, shifted task, pretrained base) as a run of `config` starts: the base from the
    cache when it is there (sweep.py trains several members on it at once); `tasks` as in run_experiment."""
    original, shifted = tasks or kind(config).make_tasks(config, device)
    status, _, base, _ = cache.cached_pretrain(config, original, device, pretrain, on_progress, cancel)
    return status, original, shifted, base


def _stopped(result: ExperimentResult, phase: str) -> ExperimentResult:
    epochs = len(result.history["finetune" if phase == "fine-tuning" else "pretrain"].train_loss)
    if result.status == "diverged":
        result.message = f"{phase} diverged at epoch {epochs}: {DIVERGED_HINT}"
    else:
        result.message = f"cancelled during {phase} after {epochs} epoch(s)"
    return result
