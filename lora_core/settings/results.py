"""What a run produces: plain dataclasses that serialise to JSON and back."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

PHASES = ("pretrain", "finetune")
STATUSES = ("ok", "diverged", "cancelled")
LOSS_KEYS = ("base_on_original", "base_on_shifted", "adapter_on_shifted", "merged_on_shifted", "merged_on_original")


@dataclass(frozen=True)
class EpochDynamics:
    """What fine-tuning has learned after one epoch (measure/dynamics.py), singular values descending:
    `delta` per adapted layer, the top ones of its ΔW (from the factors; W − W₀ under full fine-tuning);
    for the linear task `residual`, the top ones of what is still missing end to end (θ'ᵀ − W₂'W₁'), and
    `learned`, the share of each of the shift's directions the model has learned (uᵢᵀ ΔM vᵢ / σᵢ, ΔM the
    end-to-end change: 0 untouched, 1 learned)."""

    delta: dict[str, list[float]]
    residual: list[float] = field(default_factory=list)
    learned: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """One finished epoch, as passed to an `on_progress` callback. `epoch` counts from 1."""

    phase: str
    epoch: int
    epochs: int
    train_loss: float
    eval_loss: float
    eval_accuracy: float | None = None  # held-out accuracy of a classification task, else None
    dynamics: EpochDynamics | None = None  # fine-tuning's directions after this epoch, on the epochs recorded


@dataclass
class PhaseHistory:
    """Per-epoch losses of one phase: mean training mini-batch loss and held-out loss after the epoch; for a
    classification task also the held-out accuracy (empty otherwise).

    Fine-tuning also records its dynamics (EpochDynamics) after the epochs in `spectra_epochs` (every epoch, or
    evenly thinned to at most DYNAMICS_POINTS of them): `delta_spectra` {layer: [[σ₁, σ₂, ...] per recorded
    epoch]}, and for the linear task `residual_spectra` and `modes_learned`, one row per recorded epoch."""

    train_loss: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    spectra_epochs: list[int] = field(default_factory=list)
    delta_spectra: dict[str, list[list[float]]] = field(default_factory=dict)
    residual_spectra: list[list[float]] = field(default_factory=list)
    modes_learned: list[list[float]] = field(default_factory=list)

    def add_dynamics(self, epoch: int, dynamics: EpochDynamics) -> None:
        self.spectra_epochs.append(epoch)
        for layer, values in dynamics.delta.items():
            self.delta_spectra.setdefault(layer, []).append(values)
        if dynamics.residual:
            self.residual_spectra.append(dynamics.residual)
        if dynamics.learned:
            self.modes_learned.append(dynamics.learned)

    def dynamics_at(self, index: int) -> EpochDynamics:
        """The dynamics recorded at spectra_epochs[index]."""
        return EpochDynamics({layer: rows[index] for layer, rows in self.delta_spectra.items()},
                             self.residual_spectra[index] if self.residual_spectra else [],
                             self.modes_learned[index] if self.modes_learned else [])


DYNAMICS_POINTS = 400  # the most epochs a run's dynamics are recorded at (a long run's are thinned evenly)


def records_dynamics(epoch: int, epochs: int) -> bool:
    """Whether fine-tuning records its dynamics after `epoch` of `epochs`: every epoch up to DYNAMICS_POINTS of
    them, else every ⌈epochs / DYNAMICS_POINTS⌉-th and the last."""
    step = -(-epochs // DYNAMICS_POINTS)
    return epoch % step == 0 or epoch == epochs


@dataclass
class LayerParams:
    name: str
    d_in: int
    d_out: int
    lora: int  # the adapter's trainable parameters: (d_in + d_out) * r, plus d_out with DoRA; 0 without adapter
    full: int  # d_in * d_out, plus the bias
    magnitude: int = 0  # DoRA's magnitude vector (d_out), included in `lora`
    bias: int = 0  # the layer's bias (d_out, the digits network), included in `full`


@dataclass
class ParamCounts:
    lora_trainable: int
    full_trainable: int
    layers: list[LayerParams]


@dataclass
class LayerSpectra:
    """Singular values, descending. `delta_factored` is empty when there is no adapter (full fine-tuning).

    `delta_factored` comes from the adapter's factors (layers.LoRALinear.change_factors): for LoRA, PiSSA and
    OLoRA it is ΔW from the original W (r values, 2r when B started non-zero); for DoRA it is the direction's
    update s·B·A only, while `delta_merged` (W_merged − W, dense) includes DoRA's rescaled rows."""

    delta_factored: list[float]
    delta_merged: list[float]
    weight_before: list[float]
    weight_after: list[float]


@dataclass
class ExperimentResult:
    config: dict[str, Any]
    status: str  # one of STATUSES
    device: str  # e.g. "cpu", "cuda:0 (NVIDIA H200)"
    path: str  # which fine-tuning path ran: "fast" or "autograd"
    history: dict[str, PhaseHistory]  # keyed by PHASES
    losses: dict[str, float | None]  # keyed by LOSS_KEYS; None where the run stopped before it
    merge_max_abs_diff: float | None
    params: ParamCounts
    spectra: dict[str, LayerSpectra]  # keyed by layer name; empty unless status is ok
    timings: dict[str, float]  # pretrain_s, finetune_s, analysis_s
    message: str = ""  # for a diverged or cancelled run: what happened and what to change
    pretrain_cached: bool = False  # the pretrained base came from the cache
    shift_spectrum: list[float] = field(default_factory=list)  # singular values of Δθ, descending; empty unless ok
    # The lowest expected loss any change of this method's reach could give (analysis.loss_floor; None for DoRA,
    # which has no such bound), and one standard deviation of the held-out loss there.
    floor: float | None = None
    floor_noise: float | None = None
    # Filled by a sweep (sweep.py), per layer: Hu et al.'s amplification factor, Shuttleworth et al.'s intruders.
    amplification: dict[str, float] = field(default_factory=dict)
    intruders: dict[str, int] = field(default_factory=dict)
    # A classification task's held-out accuracies, keyed like `losses` (empty for regression), and a few held-out
    # samples: {"label", "original", "shifted" (pixels), "base", "adapted" (predicted classes on the shifted image)}.
    accuracies: dict[str, float | None] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # Filled by the server's scheduler: {"seconds": the time it expected (calibrated), "ratio": measured / that}
    estimate: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _finite(dataclasses.asdict(self))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        data = dict(data)
        data["history"] = {k: PhaseHistory(**v) for k, v in data["history"].items()}
        params = dict(data["params"])
        params["layers"] = [LayerParams(**layer) for layer in params["layers"]]
        data["params"] = ParamCounts(**params)
        data["spectra"] = {k: LayerSpectra(**v) for k, v in data["spectra"].items()}
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ExperimentResult:
        return cls.from_dict(json.loads(text))


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null (a diverged run's last loss, say)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
