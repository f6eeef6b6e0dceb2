"""A sweep's members as a flat table, one row per member: the CSV's columns (`row_fields`) and rows (`rows`), which
the command line writes and the Compare page shows."""

from __future__ import annotations

from typing import Any

from .settings.config import matters
from .settings.results import LOSS_KEYS
from .sweep import SweepResult, member_name
from .tasks.linear_model import TARGETS

ROW_FIELDS = ["name", "method", "rank", "alpha", "seed", "status", "path", "base_on_shifted", "adapter_on_shifted",
              "merged_on_shifted", "merged_on_original", "floor", "floor_noise",
              *(f"amplification_{layer}" for layer in TARGETS), *(f"intruders_{layer}" for layer in TARGETS),
              "finetune_s"]


PER_LAYER = ("amplification", "intruders")  # a row's columns per measured layer


def _layers(result: SweepResult) -> list[str]:
    """The layers a sweep's table has columns for: the linear model's two, then any other a member measured."""
    return [*TARGETS, *sorted({layer for run in result.members for layer in run.spectra} - set(TARGETS))]


def row_fields(result: SweepResult) -> list[str]:
    """ROW_FIELDS, plus the columns of a digits sweep: its third layer's, and the held-out accuracies; a text
    sweep's placement and trainable parameters."""
    extra = [f"{what}_{layer}" for what in PER_LAYER for layer in _layers(result)[len(TARGETS):]]
    accuracy = [f"accuracy_{k}" for k in LOSS_KEYS] if any(run.accuracies for run in result.members) else []
    placed = PLACEMENT_FIELDS if _placed(result) else []
    return [*ROW_FIELDS[:-1], *extra, *accuracy, *placed, ROW_FIELDS[-1]]


PLACEMENT_FIELDS = ["targets", "trainable"]


def _placed(result: SweepResult) -> bool:
    """Whether the sweep's task places adapters by target module (the text task)."""
    return matters("targets", {**result.config, "method": "lora"})


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """One flat row per member (`row_fields`): the CSV's and the Compare page's table."""
    out, layers, placed = [], _layers(result), _placed(result)
    for method, run in zip(result.methods, result.members, strict=True):
        c = run.config
        adapter = method != "full"  # full fine-tuning has no rank or α
        out.append({"name": member_name(method, c), "method": method, "rank": c["rank"] if adapter else None,
                    "alpha": c["alpha"] if adapter else None,
                    "seed": c["seed"], "status": run.status, "path": run.path,
                    **{k: run.losses.get(k) for k in ROW_FIELDS if k in run.losses},
                    "floor": run.floor, "floor_noise": run.floor_noise,
                    **{f"{what}_{k}": getattr(run, what).get(k) for what in PER_LAYER for k in layers},
                    **{f"accuracy_{k}": v for k, v in run.accuracies.items()},
                    **({"targets": c["targets"] if adapter else "all weights",
                        "trainable": run.params.lora_trainable if adapter else run.params.full_trainable}
                       if placed else {}),
                    "finetune_s": run.timings.get("finetune_s")})
    return out
