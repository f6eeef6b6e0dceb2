"""The experiment's configuration: one frozen dataclass, its presets, and its validation.

Every knob is declared once here with its default, its bounds and its help text. The CLI flags, the app's
widgets and the URL's query parameters are all derived from these declarations, so a name, a default or a
limit never appears twice.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

# Choices, written once and imported wherever a widget, flag or check needs them.
METHODS = ("lora", "full")
SHIFTS = ("constant", "low_rank", "full_rank")
SHIFT_LABELS = {"constant": "constant", "low_rank": "low-rank", "full_rank": "full-rank"}
DEVICES = ("auto", "cpu", "cuda", "mps")
INITS = ("gaussian", "kaiming")  # gaussian: the article's randn; kaiming: PEFT's kaiming_uniform(a=sqrt(5))
DTYPES = ("float32", "float64")
BYTES_PER_ITEM = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}  # half precisions: Parameters page
PATHS = ("auto", "autograd", "fast")  # which training path fine-tunes; auto picks fast when it applies

# Memory a configuration may ask for before it is refused (bytes); an env var raises or lowers it.
MEMORY_LIMIT_BYTES = int(os.environ.get("LORA_EXPLORER_MAX_BYTES", 8 * 2**30))
MAX_DIM = 65_536
MAX_SAMPLES = 10_000_000
MAX_EPOCHS = 100_000


class ConfigError(ValueError):
    """A configuration that cannot run; the message says what is wrong and what is allowed."""


def _knob(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple[str, ...] | None = None, positive: bool = False) -> Any:
    """A config field with its bounds: `lo`/`hi` inclusive, `positive` means > 0 (for floats)."""
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices, "positive": positive}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that decides one run: task, model sizes, adapter, training. Defaults are the `default` preset."""

    # Adapter
    rank: int = _knob(2, "LoRA rank r (at most the smallest dimension of an adapted layer)", lo=1, hi=MAX_DIM)
    alpha: float = _knob(2.0, "LoRA scale α; the update is multiplied by α/r", positive=True)
    method: str = _knob("lora", "fine-tuning method: LoRA adapters or all weights", choices=METHODS)
    init: str = _knob("kaiming", "initialisation of A (B starts at zero)", choices=INITS)
    # Task
    shift: str = _knob("constant", "kind of distribution shift applied to θ", choices=SHIFTS)
    shift_scale: float = _knob(1.0, "size c of the shift", positive=True)
    shift_rank: int = _knob(4, "rank s of a low_rank shift", lo=1, hi=MAX_DIM)
    n_samples: int = _knob(1024, "training samples per task", lo=1, hi=MAX_SAMPLES)
    n_eval: int = _knob(512, "held-out samples per task, used only for evaluation", lo=1, hi=MAX_SAMPLES)
    # Model: d_in -> hidden -> d_out, two bias-free linear layers
    d_in: int = _knob(64, "input dimension", lo=1, hi=MAX_DIM)
    hidden: int = _knob(64, "hidden dimension", lo=1, hi=MAX_DIM)
    d_out: int = _knob(64, "output dimension", lo=1, hi=MAX_DIM)
    # Training
    pretrain_epochs: int = _knob(30, "epochs of pretraining on the original task", lo=1, hi=MAX_EPOCHS)
    epochs: int = _knob(30, "epochs of fine-tuning on the shifted task", lo=1, hi=MAX_EPOCHS)
    batch_size: int = _knob(64, "mini-batch size", lo=1, hi=MAX_SAMPLES)
    lr: float = _knob(1e-2, "Adam learning rate", positive=True)
    seed: int = _knob(0, "random seed for data, initialisation and shuffling", lo=0, hi=2**31 - 1)
    device: str = _knob("auto", "where to train: auto picks CUDA, then Apple MPS, then CPU", choices=DEVICES)
    dtype: str = _knob("float32", "floating-point precision", choices=DTYPES)
    path: str = _knob("auto", "fine-tuning path: auto uses the fast path when it applies", choices=PATHS)

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with `changes` applied (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def scaling(self) -> float:
        """The factor s = α / r that multiplies B A."""
        return self.alpha / self.rank


FIELDS = {f.name: f for f in dataclasses.fields(ExperimentConfig)}

# The article's exact experiment; `default` is the dataclass defaults (about a second on a 2-core CPU).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "article": dict(rank=1, alpha=1.0, init="gaussian", shift="constant", shift_scale=1.0, n_samples=10_000,
                    n_eval=2_000, d_in=1001, hidden=1000, d_out=1000, pretrain_epochs=100, epochs=100,
                    batch_size=128, lr=1e-3),
}


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """The named preset with `overrides` applied; unknown names raise ConfigError."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return make_config(**{**PRESETS[name], **overrides})


def make_config(**values: Any) -> ExperimentConfig:
    """Build a config, turning unknown names into a ConfigError instead of a TypeError."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    return ExperimentConfig(**values)


def bounds_text(name: str) -> str:
    """What values a field allows, in words, e.g. 'an integer from 1 to 65536'."""
    meta = FIELDS[name].metadata
    kind = FIELDS[name].type
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    if kind == "int":
        return f"an integer from {meta['lo']:,} to {meta['hi']:,}"
    return "a finite number greater than 0"


def coerce(name: str, value: Any) -> Any:
    """Convert `value` (text from a flag or URL, or a number) to the field's type, or raise ConfigError.
    Text that is no value of the field's type (a fraction for an integer, 'nan' or 'inf' anywhere) is refused."""
    if name not in FIELDS:
        raise ConfigError(f"unknown setting {name!r}; allowed: {', '.join(FIELDS)}")
    kind = FIELDS[name].type
    try:
        if kind == "str":
            return str(value)
        number = float(value) if isinstance(value, str) else value
        if not math.isfinite(number) or (kind == "int" and not float(number).is_integer()):
            raise ValueError
        return int(number) if kind == "int" else float(number)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {bounds_text(name)}, got {value!r}") from None


def validate(config: ExperimentConfig) -> None:
    """Raise ConfigError naming the first problem; the single place where limits are checked."""
    for name, f in FIELDS.items():
        value = getattr(config, name)
        meta = f.metadata
        bad = False
        if f.type == "int":
            bad = isinstance(value, bool) or not isinstance(value, int) or not meta["lo"] <= value <= meta["hi"]
        elif f.type == "float":
            bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            bad = bad or (meta["positive"] and value <= 0)
        elif meta["choices"]:
            bad = value not in meta["choices"]
        if bad:
            raise ConfigError(f"{name} must be {bounds_text(name)}, got {value!r}")
    smallest = max_rank(config.d_in, config.hidden, config.d_out)
    if config.method == "lora" and config.rank > smallest:
        raise ConfigError(f"rank must be from 1 to {smallest} (the smallest dimension of an adapted layer), "
                          f"got {config.rank}")
    if config.shift == "low_rank" and config.shift_rank > min(config.d_in, config.d_out):
        raise ConfigError(f"shift_rank must be from 1 to {min(config.d_in, config.d_out)} (min of d_in, d_out), "
                          f"got {config.shift_rank}")
    if config.path == "fast" and config.method != "lora":
        raise ConfigError("path 'fast' applies only to method 'lora'; use path auto or autograd for full fine-tuning")
    need = estimated_bytes(config)
    if need > MEMORY_LIMIT_BYTES:
        raise ConfigError(f"this configuration needs about {need / 2**30:.1f} GiB, more than the "
                          f"{MEMORY_LIMIT_BYTES / 2**30:.1f} GiB allowed; reduce n_samples or the layer sizes")


def max_rank(d_in: int, hidden: int, d_out: int) -> int:
    """The largest rank an adapter on both layers can have: the smallest dimension of either layer."""
    return min(d_in, hidden, d_out)


def estimated_bytes(config: ExperimentConfig) -> int:
    """A generous estimate of the memory a run needs: data for both tasks, weights, Adam state, spectra."""
    item = BYTES_PER_ITEM[config.dtype]
    rows = 2 * (config.n_samples + config.n_eval)  # original and shifted task
    data = rows * (config.d_in + 2 * config.d_out + config.hidden)  # inputs, targets, cached activations
    weights = config.d_in * config.hidden + config.hidden * config.d_out
    # weights, a pristine copy, gradients, two Adam moments, merged copy, SVD work space
    return item * (data + 8 * weights + config.d_in * config.d_out)
