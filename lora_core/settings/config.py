"""The experiment's configuration: one frozen dataclass, its presets, and its validation.

Every knob is declared once here with its default, its bounds and its help text. The CLI flags, the app's
widgets and the URL's query parameters are all derived from these declarations, so a name, a default or a
limit never appears twice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# All below this module, none loading torch: the rules a config is validated by (budget, path_rule, task_specs,
# variants) and the choices its settings are declared with.
from .budget import estimate
from .choices import (  # noqa: F401 - re-exported: every setting's choices are importable from config
    BOOL_TEXT,
    BYTES_PER_ITEM,
    DEVICES,
    DIGIT_SHIFT_LABELS,
    DIGIT_SHIFTS,
    DTYPES,
    FLOAT_MAX,
    INIT_LABELS,
    INITS,
    LAYER_SET_LABELS,
    LAYER_SETS,
    MAX_DIM,
    MAX_EPOCHS,
    MAX_SAMPLES,
    MEMORY_LIMIT_BYTES,
    METHOD_LABELS,
    METHOD_SET_LABELS,
    METHOD_SETS,
    METHODS,
    MIN_POSITIVE,
    OPTIMIZER_LABELS,
    OPTIMIZERS,
    PATHS,
    RANKED_SHIFTS,
    SHIFT_LABELS,
    SHIFTS,
    TARGET_SET_LABELS,
    TARGET_SETS,
    TASK_LABELS,
    TASKS,
    TEXT_SHIFT_LABELS,
    TEXT_SHIFTS,
    ConfigError,
    canonical_targets,
)
from .knobs import cut, knob, parse_number, raise_, short
from .path_rule import choose_path
from .task_specs import rank_limit, spec
from .variants import lora_scaling


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that decides one run: task, model sizes, adapter, training. Defaults are the `default` preset.

    The declaration order is the Playground's order and the URL's.
    """

    # Task, adapter and shift: the Playground's main controls
    task: str = knob("linear", "the task: the article's linear regression, handwritten digits with a small "
                     "nonlinear network, or text with a small transformer", label="Task", choices=TASKS,
                     choice_labels=TASK_LABELS, group="main",
                     base=True)
    rank: int = knob(2, "LoRA rank r (at most the smallest dimension of an adapted layer)", label="Rank r",
                     lo=1, hi=MAX_DIM, slider=(1, None), group="main")
    alpha: float = knob(2.0, "LoRA scale α; the update is multiplied by α/r", label="Alpha α", positive=True,
                        slider=(0.25, 64.0), step=0.25, group="main")
    shift: str = knob("constant", "kind of distribution shift applied to θ", label="Shift", choices=SHIFTS,
                      choice_labels=SHIFT_LABELS, group="main", only_if={"task": "linear"})
    shift_scale: float = knob(1.0, "size c of the shift", label="Shift size", positive=True, step=0.1, group="main",
                              only_if={"task": "linear"})
    shift_rank: int = knob(4, "rank s of a low_rank or graded shift (graded: its directions' sizes halve, "
                           "4 : 2 : 1 for s = 3)", label="Shift rank", lo=1, hi=MAX_DIM, group="main",
                           only_if={"task": "linear", "shift": RANKED_SHIFTS})
    digits_shift: str = knob("rotated", "how the digits change for fine-tuning", label="Digits shift",
                             choices=DIGIT_SHIFTS, choice_labels=DIGIT_SHIFT_LABELS, group="main",
                             only_if={"task": "digits"})
    angle: int = knob(90, "rotation of the digits, degrees counter-clockwise", label="Rotation angle (°)", lo=1,
                      hi=359, group="main", only_if={"task": "digits", "digits_shift": "rotated"})
    noise: float = knob(0.3, "standard deviation of the Gaussian noise added to every pixel (pixels run from 0 to "
                        "1)", label="Noise σ", positive=True, step=0.1, group="main",
                        only_if={"task": "digits", "digits_shift": "noised"})
    held_out: int = knob(3, "how many classes (the last digits) pretraining never sees; fine-tuning adds them "
                         "(1-9: at least one class must remain to pretrain on)", label="Classes held out", lo=1,
                         hi=9, group="main", base=True, only_if={"task": "digits", "digits_shift": "held_out"})
    text_shift: str = knob("code", "what the text model is fine-tuned on after learning the documentation",
                           label="Text shift", choices=TEXT_SHIFTS, choice_labels=TEXT_SHIFT_LABELS, group="main",
                           only_if={"task": "text"})
    # Method, model (d_in -> hidden -> d_out, two bias-free linear layers), data and training: the expander
    method: str = knob("lora", "fine-tuning method: LoRA adapters or all weights", label="Method", choices=METHODS,
                       choice_labels=METHOD_LABELS, group="method",
                       maths=r"LoRA: $W' = W + s\,BA$, only $A$, $B$ train; full: every weight trains")
    # LoRA's variants (PEFT's names); lora_core/variants.py says how each is computed and which path takes it
    use_rslora: bool = knob(False, "rsLoRA: scale the update by α/√r instead of α/r", label="rsLoRA",
                            group="method", only_if={"method": "lora"},
                            maths=r"$s = \alpha/\sqrt{r}$ instead of $\alpha/r$: the update's size no longer "
                                  r"shrinks as $r$ grows")
    use_dora: bool = knob(False, "DoRA: a trained magnitude per output row times the normalised direction "
                          "W + sBA", label="DoRA", group="method", only_if={"method": "lora"},
                          maths=r"$W' = m \odot \frac{W + sBA}{\lVert W + sBA\rVert_{\text{row}}}$, "
                                r"the magnitude $m$ trained too (starts at the row norms of $W$)")
    init: str = knob("kaiming", "initialisation of A and B (gaussian, kaiming: B = 0; pissa, olora: from W, "
                     "whose residual W - sBA becomes the frozen base)", label="Initialisation",
                     choices=INITS, choice_labels=INIT_LABELS, group="method", only_if={"method": "lora"},
                     maths=r"PiSSA: $BA$ from the top $r$ singular triplets of $W$; OLoRA: from $W = QR$; "
                           r"both freeze the residual $W - sBA$")
    lr_ratio: float = knob(1.0, "LoRA+: B's learning rate is lr_ratio times A's (1: plain LoRA; LoRA+ "
                           "suggests 16)", label="LoRA+ ratio η_B/η_A", positive=True, step=1.0,
                           group="method", only_if={"method": "lora"},
                           maths=r"LoRA+: $\eta_B = \lambda\,\eta_A$; Adam moves $B$ faster than $A$")
    layers: str = knob("1,2,3", "the digits network's layers that get an adapter (1 input, 2 hidden, 3 output)",
                       label="Adapted layers", choices=LAYER_SETS, choice_labels=LAYER_SET_LABELS, group="method",
                       only_if={"task": "digits", "method": "lora"},
                       maths=r"an adapter $s\,BA$ on each chosen layer; the others stay frozen")
    targets: str = knob("q,v", "the text model's modules that get an adapter in every block (PEFT's "
                        "target_modules): a comma-separated subset of q, k, v, o, fc1, fc2, or attention, mlp, all",
                        label="Target modules", choices=TARGET_SETS, choice_labels=TARGET_SET_LABELS,
                        group="method", only_if={"task": "text", "method": "lora"}, spelling=canonical_targets,
                        choices_text="a comma-separated subset of q, k, v, o, fc1, fc2, or attention, mlp, all",
                        maths=r"an adapter $s\,BA$ on each chosen projection of every block")
    d_in: int = knob(64, "input dimension", label="Input size d_in", lo=1, hi=MAX_DIM, group="more", base=True,
                     only_if={"task": "linear"})
    hidden: int = knob(64, "hidden dimension", label="Hidden size", lo=1, hi=MAX_DIM, group="more", base=True)
    d_out: int = knob(64, "output dimension", label="Output size d_out", lo=1, hi=MAX_DIM, group="more", base=True,
                      only_if={"task": "linear"})
    blocks: int = knob(2, "transformer blocks of the text model", label="Blocks", lo=1, hi=12, group="more",
                       base=True, only_if={"task": "text"})
    heads: int = knob(4, "attention heads per block (the hidden size must be a multiple)", label="Heads", lo=1,
                      hi=64, group="more", base=True, only_if={"task": "text"})
    context: int = knob(64, "characters the text model sees at once (a window's length)", label="Context", lo=2,
                        hi=1024, group="more", base=True, only_if={"task": "text"})
    n_samples: int = knob(1024, "training samples per task (text: windows of `context` characters)",
                          label="Training samples", lo=1, hi=MAX_SAMPLES, group="more", base=True,
                          only_if={"task": ("linear", "text")})
    n_eval: int = knob(512, "held-out samples per task, used only for evaluation", label="Held-out samples", lo=1,
                       hi=MAX_SAMPLES, group="more", base=True, only_if={"task": ("linear", "text")})
    pretrain_epochs: int = knob(30, "epochs of pretraining on the original task", label="Pretraining epochs", lo=1,
                                hi=MAX_EPOCHS, group="more", base=True)
    epochs: int = knob(30, "epochs of fine-tuning on the shifted task", label="Fine-tuning epochs", lo=1,
                       hi=MAX_EPOCHS, group="more")
    batch_size: int = knob(64, "mini-batch size", label="Batch size", lo=1, hi=MAX_SAMPLES, group="more", base=True)
    lr: float = knob(1e-2, "learning rate (pretraining's Adam, and fine-tuning's optimizer)", label="Learning rate",
                     positive=True, step=1e-3, group="more", base=True)
    optimizer: str = knob("adam", "fine-tuning optimizer: Adam (the article's) or plain SGD (what the theory of "
                          "learning one direction at a time describes); pretraining always uses Adam",
                          label="Fine-tuning optimizer", choices=OPTIMIZERS, choice_labels=OPTIMIZER_LABELS,
                          group="more")
    seed: int = knob(0, "random seed for data, initialisation and shuffling", label="Seed", lo=0, hi=2**31 - 1,
                     group="more", base=True)
    # Where and how: flags only
    device: str = knob("auto", "where to train: auto picks CUDA, then Apple MPS, then CPU", choices=DEVICES,
                       base=True)
    dtype: str = knob("float32", "floating-point precision", choices=DTYPES, base=True)
    path: str = knob("auto", "fine-tuning path: auto uses the fast path when it applies", choices=PATHS)

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with `changes` applied (validated; an unknown name is a ConfigError, as in make_config)."""
        return make_config(**{**{name: getattr(self, name) for name in FIELDS}, **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def scaling(self) -> float:
        """The factor s that multiplies B A: α / r, or α / √r with rsLoRA."""
        return lora_scaling(self.alpha, self.rank, self.use_rslora)


FIELDS = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
# Derived from the declarations above: the Playground's settings (in order) and their labels, the fields that
# shape the pretrained base (the base cache's key).
LABELS = {name: f.metadata["label"] for name, f in FIELDS.items() if f.metadata["label"]}
BASE_FIELDS = tuple(name for name, f in FIELDS.items() if f.metadata["base"])


def cli_name(field_name: str) -> str:
    """A field's name on the command line and in the URL: 'shift_scale' -> 'shift-scale'."""
    return field_name.replace("_", "-")


def field_name(name: str) -> str:
    """A field's name from its CLI/URL name (either spelling, any case): 'Shift-Scale' -> 'shift_scale'."""
    return name.strip().lower().replace("-", "_")

# The article's exact experiment; `default` is the dataclass defaults (about a second on a 2-core CPU); `digits`
# the digits task with the same defaults (a 90° rotation); `dynamics` a graded rank-3 shift (directions 4 : 2 : 1)
# learned by plain SGD slowly enough to watch its directions arrive one at a time (tests/test_dynamics.py).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "digits": {"task": "digits"},
    "text": dict(task="text", hidden=64, blocks=2, heads=4, context=64, n_samples=2048, n_eval=256, batch_size=32,
                 lr=3e-3, pretrain_epochs=16, epochs=4, rank=8, alpha=16.0),
    "article": dict(rank=1, alpha=1.0, init="gaussian", shift="constant", shift_scale=1.0, n_samples=10_000,
                    n_eval=2_000, d_in=1001, hidden=1000, d_out=1000, pretrain_epochs=100, epochs=100,
                    batch_size=128, lr=1e-3),
    "dynamics": dict(d_in=32, hidden=32, d_out=32, n_samples=4096, n_eval=512, batch_size=256, shift="graded",
                     shift_rank=3, shift_scale=0.5, rank=3, alpha=3.0, optimizer="sgd", lr=1e-2, pretrain_epochs=60,
                     epochs=60),
}


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """The named preset with `overrides` applied; unknown names (or a name that is no string) raise ConfigError."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(f"unknown preset {short(name)}; allowed: {', '.join(PRESETS)}")
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
    if meta["choices_text"]:
        return meta["choices_text"]
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    if kind == "bool":
        return "true or false"
    if kind == "int":
        return f"an integer from {meta['lo']:,} to {meta['hi']:,}"
    return f"a finite number greater than 0 and at most {FLOAT_MAX:.3g}"


def coerce(name: str, value: Any) -> Any:
    """Convert `value` (text from a flag or URL, or a number) to the field's type, or raise ConfigError.
    Text that is no value of the field's type (a fraction for an integer, 'nan' or 'inf' anywhere) is refused."""
    if name not in FIELDS:
        raise ConfigError(f"unknown setting {name!r}; allowed: {', '.join(FIELDS)}")
    kind = FIELDS[name].type
    try:
        if kind == "str":
            if isinstance(value, str) and FIELDS[name].metadata["spelling"]:
                value = FIELDS[name].metadata["spelling"](value)
            if not isinstance(value, str) or value not in (FIELDS[name].metadata["choices"] or (value,)):
                raise ValueError
            return value
        if kind == "bool":
            if isinstance(value, bool):
                return value
            return BOOL_TEXT[value.strip().lower()] if isinstance(value, str) else raise_(TypeError)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError
        number = parse_number(value) if isinstance(value, str) else value
        if not math.isfinite(number) or (kind == "int" and not float(number).is_integer()):
            raise ValueError
        number = int(number) if kind == "int" else float(number)
    except (TypeError, ValueError, KeyError, OverflowError):  # OverflowError: an integer too large for a float
        raise ConfigError(f"{name} must be {bounds_text(name)}, got {short(value)}") from None
    # A message quotes the number as it was typed ('99999999999999999999', not 1e20 turned back into digits).
    check_value(name, number, shown=value.strip() if isinstance(value, str) else None)
    return number


def validate(config: ExperimentConfig) -> None:
    """Raise ConfigError naming the first problem; the single place where limits are checked."""
    for name in FIELDS:
        check_value(name, getattr(config, name))
    if problem := spec(config).problem(config):
        raise ConfigError(problem)
    smallest = rank_limit(config)
    if config.method == "lora" and config.rank > smallest:
        raise ConfigError(f"rank must be from 1 to {smallest} (the smallest dimension of an adapted layer), "
                          f"got {config.rank}")
    if matters("shift_rank", config.to_dict()) and config.shift_rank > min(config.d_in, config.d_out):
        raise ConfigError(f"shift_rank must be from 1 to {min(config.d_in, config.d_out)} (min of d_in, d_out), "
                          f"got {config.shift_rank}")
    choose_path(config)  # refuses a path that cannot apply
    need = estimate(config).bytes
    if need > MEMORY_LIMIT_BYTES:
        raise ConfigError(f"this configuration needs about {need / 2**30:.1f} GiB, more than the "
                          f"{MEMORY_LIMIT_BYTES / 2**30:.1f} GiB allowed; reduce "
                          + ("n_samples or the layer sizes" if config.task == "linear" else "the hidden size"))


def check_methods(methods: list[str] | tuple[str, ...]) -> list[str] | tuple[str, ...]:
    """`methods` if every one is a sweep's method name (METHOD_SETS), else ConfigError naming the others."""
    unknown = [m for m in methods if m not in METHOD_SETS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; allowed: {', '.join(METHOD_SETS)}")
    return methods


def check_value(name: str, value: Any, shown: Any = None) -> None:
    """Raise ConfigError if `value` is no allowed value of setting `name` (its type, bounds or choices); the
    message shows `shown` (the number as typed) when given, else the value's repr."""
    meta, kind = FIELDS[name].metadata, FIELDS[name].type
    shown = short(value) if shown is None else cut(shown)
    bad = False
    if kind == "int":
        bad = isinstance(value, bool) or not isinstance(value, int) or not meta["lo"] <= value <= meta["hi"]
    elif kind == "float":
        # A value float32 cannot hold would turn into inf on the first tensor op: refuse it here.
        bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not -FLOAT_MAX <= value <= FLOAT_MAX
        bad = bad or (meta["positive"] and value <= 0)
        if not bad and meta["positive"] and value < MIN_POSITIVE:
            raise ConfigError(f"{name} {shown} is too small to change anything "
                              f"(in float32 it is lost to rounding, or is 0); use at least {MIN_POSITIVE:g}")
    elif kind == "bool":
        bad = not isinstance(value, bool)
    elif meta["choices"]:
        bad = not isinstance(value, str) or value not in meta["choices"]
    if bad:
        raise ConfigError(f"{name} must be {bounds_text(name)}, got {shown}")


def matters(name: str, values: Mapping[str, Any]) -> bool:
    """Whether setting `name` changes anything given the other settings in `values` (its `only_if`)."""
    only_if = FIELDS[name].metadata["only_if"] or {}
    return all(values[field] in value if isinstance(value, tuple) else values[field] == value
               for field, value in only_if.items())
