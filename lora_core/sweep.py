"""Sweeps: every member of a grid of ranks × methods × α × seeds fine-tuned from one pretrained base per seed.

    result = run_sweep(preset("default"), ranks=(1, 2, 4), methods=("lora", "rslora", "full"), alphas=(1.0, 4.0))

A member is exactly the single `run_experiment` of its config (the same code, the same base from the cache, the
same batches), so its trajectory is that run's. The sweep adds what needs several members or the models:
Hu et al.'s amplification factor and Shuttleworth et al.'s intruder dimensions per member and layer, and the
subspace similarity φ between members' A (two ranks; two seeds). A method name is a named set of settings
(variants.METHOD_SETS); full fine-tuning has no rank or α, so it is one member per seed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .adapters.attach import lora_layers
from .experiment import prepared, run_experiment
from .measure import analysis
from .measure.dynamics import Dynamics
from .settings import variants
from .settings.budget import Estimate, estimate
from .settings.config import ConfigError, ExperimentConfig, check_methods, coerce, matters
from .settings.results import ExperimentResult, Progress
from .tasks.data import Task
from .tasks.registry import kind
from .training import batched, fast_batched
from .training.devices import cpu_threads, pick_device


@dataclass(frozen=True)
class SweepRequest:
    """A sweep's whole input, hashable: what the server's scheduler runs, queues and shares (single flight)."""

    config: ExperimentConfig
    ranks: tuple[int, ...]
    methods: tuple[str, ...]
    alphas: tuple[float, ...]
    seeds: tuple[int, ...]
    # The text task's placements (`targets` settings) as one more axis; () keeps the config's own
    targets: tuple[str, ...] = ()
    # With a budget, each placement's adapters train at the largest rank whose parameters fit it (the ranks
    # axis unused): the placements compared at equal cost; 0: no budget
    budget: int = 0


@dataclass(frozen=True)
class SweepProgress:
    """One finished epoch of one member: `member` counts from 0 of `members`."""

    member: int
    members: int
    progress: Progress


@dataclass
class SweepResult:
    config: dict[str, Any]  # the base configuration the grid varies
    grid: dict[str, list]  # ranks, methods, alphas, seeds
    status: str  # "ok", or "cancelled" with the members finished so far
    members: list[ExperimentResult]  # each with config, history, losses, spectra, floor, amplification, intruders
    methods: list[str]  # each member's method name (variants.METHOD_SETS)
    similarity: list[dict[str, Any]] = field(default_factory=list)  # {layer, a, b, values: φ[i][j]}
    timings: dict[str, float] = field(default_factory=dict)  # total_s
    # Filled by the server's scheduler: {"seconds": the time it expected (calibrated), "ratio": measured / that}
    estimate: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("members", "methods")}
        out["members"] = [{"name": member_name(m, r.config), "method": m, **r.to_dict()}
                          for m, r in zip(self.methods, self.members, strict=True)]
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


# The ways a sweep trains members together, tried in order: a LoRA member goes to the first whose `wanted`
# holds; one seed's members of it train as one batch when its `applies` does (otherwise each runs alone). Each
# module has wanted, applies, threads, batch_bytes and train_members, and its results name it as their path.
BATCH_TRAINERS = (fast_batched, batched)


def member_name(method: str, config: dict[str, Any]) -> str:
    """'lora r=4 α=2 seed 0' ('lora r=4 α=2 on q,v seed 0' where the task has target modules), or 'full seed 0'."""
    if method == "full":
        return f"full seed {config['seed']}"
    placement = f" on {config['targets']}" if matters("targets", config) else ""
    return f"{method} r={config['rank']} α={config['alpha']:g}{placement} seed {config['seed']}"


def request(config: ExperimentConfig, ranks: Sequence[int], methods: Sequence[str],
            alphas: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
            targets: Sequence[str] | None = None, budget: int = 0) -> SweepRequest:
    """A validated request: every member's config is built here, so a bad grid fails before any work."""
    check_methods(methods)
    if not ranks or not methods:
        raise ConfigError("a sweep needs at least one rank and one method")
    if (targets or budget) and not matters("targets", config.replace(method="lora").to_dict()):
        raise ConfigError("target modules and a parameter budget apply only to the text task's transformer")
    if budget < 0:
        raise ConfigError(f"a parameter budget must be a positive number of parameters, got {budget}")
    req = SweepRequest(config, tuple(dict.fromkeys(int(r) for r in ranks)), tuple(dict.fromkeys(methods)),
                       tuple(dict.fromkeys(float(a) for a in alphas or (config.alpha,))),
                       tuple(dict.fromkeys(int(s) for s in seeds or (config.seed,))),
                       tuple(dict.fromkeys(coerce("targets", t) for t in targets or ())), int(budget))
    members(req)
    return req


def members(req: SweepRequest) -> list[tuple[str, ExperimentConfig]]:
    """(method, config) of every member, seed by seed (one base each), then method, rank and α."""
    out = []
    for seed in req.seeds:
        for method in req.methods:
            settings = variants.method_settings(method, req.config)
            if method == "full":
                out.append((method, req.config.replace(seed=seed, **settings)))
                continue
            for placed in (req.config.replace(targets=t) for t in req.targets) if req.targets else (req.config,):
                for rank in _ranks(req, placed.replace(**settings)):
                    for alpha in req.alphas:
                        try:
                            out.append((method, placed.replace(seed=seed, rank=rank, alpha=alpha, **settings)))
                        except ConfigError as e:
                            raise ConfigError(f"{method} r={rank} α={alpha:g}: {e}") from None
    return out


def _ranks(req: SweepRequest, config: ExperimentConfig) -> tuple[int, ...]:
    """The ranks a placement's members train at: the grid's, or under a budget the largest that fits it."""
    if not req.budget:
        return req.ranks
    rank = analysis.fitting_rank(config, req.budget)
    if rank is None:
        one = analysis.config_param_counts(config.replace(rank=1)).lora_trainable
        raise ConfigError(f"adapters on {config.targets} train {one:,} parameters even at r = 1, more than the "
                          f"budget of {req.budget:,}")
    return (rank,)


def grid_of(req: SweepRequest) -> dict[str, list]:
    """The request's grid as the result records it."""
    axes = {"targets": list(req.targets), "budget": req.budget}  # only where used: the JSON stays as it was
    return {"ranks": list(req.ranks), "methods": list(req.methods), "alphas": list(req.alphas),
            "seeds": list(req.seeds), **{k: v for k, v in axes.items() if v}}


def answers(result: SweepResult, req: SweepRequest) -> bool:
    """Whether `result` is the sweep of `req` (same settings, same grid)."""
    return result.config == req.config.to_dict() and result.grid == grid_of(req)


def sweep_estimate(req: SweepRequest, cached: Callable[[ExperimentConfig], bool] = lambda c: False) -> Estimate:
    """The members' work added up, each seed's pretraining once (none where `cached(config)` says its base is
    kept already) and each batch's fine-tune as the batch takes it (BATCH_TRAINERS' batch_seconds); memory: the
    largest member's (they run one after another) plus the buffers of one seed's batches (BATCH_TRAINERS'
    batch_bytes; they train before that seed's members run)."""
    todo = members(req)
    parts = [estimate(config) for _, config in todo]
    configs = [config for _, config in todo]
    batches = {seed: _batches(configs, seed) for seed in req.seeds}
    extra = max(sum(trainer.batch_bytes([configs[i] for i in group]) for trainer, group in batches[seed])
                for seed in req.seeds)
    firsts = {c.seed: (c, p) for c, p in reversed(list(zip(configs, parts, strict=True)))}  # each seed's first
    pretraining = sum(p.pretrain_seconds for c, p in firsts.values() if not cached(c))
    # a member trained in a batch costs its run without its own fine-tune; the batch costs its own time
    together = [(trainer, group) for groups in batches.values() for trainer, group in groups]
    in_batch = {i for _, group in together for i in group}
    seconds = (sum(p.seconds - p.pretrain_seconds - (p.finetune_seconds if i in in_batch else 0.0)
                   for i, p in enumerate(parts))
               + sum(trainer.batch_seconds([configs[i] for i in group]) for trainer, group in together) + pretraining)
    return Estimate(max(p.bytes for p in parts) + extra, sum(p.macs for p in parts), seconds,
                    sum(p.steps for p in parts), pretraining)


def _batches(configs: list[ExperimentConfig], seed: int) -> list[tuple[Any, list[int]]]:
    """One seed's batches as (trainer, member indices): each member to the first of BATCH_TRAINERS that wants
    it, a group kept where its trainer applies to it."""
    out, taken = [], set()
    for trainer in BATCH_TRAINERS:
        group = [i for i, c in enumerate(configs) if c.seed == seed and i not in taken and trainer.wanted(c)]
        taken.update(group)
        if group and trainer.applies([configs[i] for i in group]):
            out.append((trainer, group))
    return out


def run_sweep(config: ExperimentConfig, ranks: Sequence[int], methods: Sequence[str],
              alphas: Sequence[float] | None = None, seeds: Sequence[int] | None = None,
              on_progress: Callable[[SweepProgress], bool | None] | None = None,
              cancel: Callable[[], bool] | None = None) -> SweepResult:
    """Fine-tune every member of the grid (see the module's docstring); cancellable between mini-batches."""
    return run_request(request(config, ranks, methods, alphas, seeds), on_progress, cancel)


def run_request(req: SweepRequest, on_progress: Callable[[SweepProgress], bool | None] | None = None,
                cancel: Callable[[], bool] | None = None) -> SweepResult:
    start = time.perf_counter()
    todo = members(req)
    result = SweepResult(req.config.to_dict(), grid_of(req), "ok", [], [])
    base_vectors: dict[tuple[int, str], torch.Tensor] = {}  # (seed, layer) -> the base weight's left vectors
    factors: list[dict[str, torch.Tensor]] = []  # per member: each layer's A, for φ

    def progress_of(index: int) -> Callable[[Progress], bool | None]:
        return lambda p: None if on_progress is None else on_progress(SweepProgress(index, len(todo), p))

    # seed -> (original, shifted): no axis but the seed changes a member's data (ranks, methods, α, targets and
    # the budget are the adapter's), so the members of a seed share theirs
    made: dict[int, tuple[Task, Task]] = {}

    def tasks_of(config: ExperimentConfig) -> tuple[Task, Task]:
        if config.seed not in made:
            made[config.seed] = kind(config).make_tasks(config, pick_device(config.device, config.dtype))
        return made[config.seed]

    trained = _train_batches(todo, progress_of, cancel, tasks_of)
    for index, (method, config) in enumerate(todo):
        # a member trained in a batch replays nothing: its epochs were reported as they were trained
        progress = None if index in trained else progress_of(index)

        def inspect(run: ExperimentResult, base: nn.Module, tuned: nn.Module, merged: nn.Module,
                    config: ExperimentConfig = config) -> None:
            _analyse(run, config, base, tuned, merged, base_vectors)
            factors.append({name: layer.lora_A.detach().cpu() for name, layer in lora_layers(tuned).items()})

        run = run_experiment(config, on_progress=progress, cancel=cancel, inspect=inspect, trained=trained.get(index),
                             live_dynamics=False,  # the page draws a sweep's dynamics when it has finished
                             tasks=tasks_of(config))
        if index in trained:  # its fine-tune ran in the batch: its share of the batch's time
            run.timings["finetune_s"] = trained[index].seconds
        if run.status == "cancelled":
            result.status = "cancelled"
            break
        if len(factors) == len(result.members):  # a diverged member has no models to inspect
            factors.append({})
        result.members.append(run)
        result.methods.append(method)
    result.similarity = _similarities(result, factors)
    result.timings["total_s"] = time.perf_counter() - start
    return result


def _train_batches(todo: list[tuple[str, ExperimentConfig]], progress_of: Callable,
                   cancel: Callable[[], bool] | None,
                   tasks_of: Callable[[ExperimentConfig], tuple[Task, Task]]) -> dict[int, batched.Trained]:
    """Fine-tune, per seed, each batch of members (_batches) together; {member index: Trained}."""
    out: dict[int, batched.Trained] = {}
    configs = [c for _, c in todo]
    for seed in dict.fromkeys(c.seed for c in configs):
        groups = _batches(configs, seed)
        if not groups:
            continue
        config = configs[groups[0][1][0]]
        device = pick_device(config.device, config.dtype)
        status, _, shifted, base = prepared(config, device, cancel=cancel, tasks=tasks_of(config))
        if status != "ok":  # cancelled or diverged pretraining: each member's own run says so
            continue
        for trainer, indices in groups:
            with cpu_threads(device, trainer.threads([configs[i] for i in indices])):
                members = [configs[i] for i in indices]
                runs = trainer.train_members(members, base, shifted,
                                             lambda j, p, indices=indices: progress_of(indices[j])(p), cancel,
                                             Dynamics(members[0], base, shifted).record_batch)
            out.update({i: run for i, run in zip(indices, runs, strict=True) if run.status != "cancelled"})
            if any(run.status == "cancelled" for run in runs):
                return out
    return out


def _analyse(run: ExperimentResult, config: ExperimentConfig, base: nn.Module, tuned: nn.Module, merged: nn.Module,
             base_vectors: dict[tuple[int, str], torch.Tensor]) -> None:
    """Each layer's amplification factor (from the factors where ΔW is a product of them) and intruders."""
    kind = variants.delta_kind(config)
    for name in run.spectra:  # the layers the run measured: the adapted ones, every layer under full fine-tuning
        before, after = base.get_submodule(name).weight, merged.get_submodule(name).weight
        layer = tuned.get_submodule(name)
        if kind in ("lora", "from_weights"):
            b, a = layer.change_factors()
            run.amplification[name] = analysis.factored_amplification(b, a, layer.scaling, before, config.rank)
        elif kind == "dora":
            run.amplification[name] = analysis.amplification_factor(after - before, before, config.rank)
        # full fine-tuning has no rank to take the top directions of: no amplification factor
        key = (config.seed, name)
        if key not in base_vectors:
            base_vectors[key] = analysis.left_vectors(before)
        run.intruders[name] = analysis.intruder_count(base_vectors[key], after)


def _similarities(result: SweepResult, factors: list[dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """φ between the smallest and the largest rank of the first adapter method (first α and seed), and between
    the first two seeds at the largest rank."""
    adapters = [(i, m, r) for i, (m, r) in enumerate(zip(result.methods, result.members, strict=True))
                if m != "full" and factors[i]]
    if not adapters:
        return []
    first = adapters[0][1]
    alpha, seed = result.grid["alphas"][0], result.grid["seeds"][0]
    placement = adapters[0][2].config.get("targets")  # φ compares factors of the same layers
    same = [a for a in adapters if a[1] == first and a[2].config["alpha"] == alpha
            and a[2].config.get("targets") == placement]
    by_rank = sorted((a for a in same if a[2].config["seed"] == seed), key=lambda a: a[2].config["rank"])
    pairs = []
    if len(by_rank) >= 2:
        pairs.append((by_rank[0], by_rank[-1]))
    top = max(a[2].config["rank"] for a in same)
    by_seed = [a for a in same if a[2].config["rank"] == top]
    if len({a[2].config["seed"] for a in by_seed}) >= 2:
        pairs.append((by_seed[0], next(a for a in by_seed if a[2].config["seed"] != by_seed[0][2].config["seed"])))
    out = []
    for (i, mi, ri), (j, mj, rj) in pairs:
        for layer in sorted(factors[i].keys() & factors[j].keys()):
            out.append({"layer": layer, "a": member_name(mi, ri.config), "b": member_name(mj, rj.config),
                        "values": analysis.similarity_grid(factors[i][layer], factors[j][layer])})
    return out
