"""What a run will cost before it starts: peak memory, multiply-adds and a rough time, from its settings alone.

The memory estimate follows what the code allocates (tests/test_budget.py measures peak RSS against it over
several shapes, wide layers included); the multiply-adds count every matrix product of data generation,
pretraining, fine-tuning and analysis. `check` refuses a run over a limit with its estimate and what to change.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import variants
from .choices import BYTES_PER_ITEM, RANKED_SHIFTS, ConfigError
from .dynamics_cost import dynamics_bytes
from .path_rule import choose_path
from .speeds import (
    MACS_PER_SECOND,
    SECONDS_PER_EPOCH,
    SECONDS_PER_RUN,
    SECONDS_PER_STEP,
    SECONDS_PER_WEIGHT_STEP,
    seconds_of,
    svd_macs,
)
from .task_specs import spec

if TYPE_CHECKING:
    from .config import ExperimentConfig

EVAL_CHUNK = 8192  # held-out rows evaluated at a time (training.py), so a large held-out set fits in memory

# Limits a run of the app must stay under; whoever starts the server may change them. The CLI keeps only the
# configuration's own memory limit (config.MEMORY_LIMIT_BYTES).
RUN_MACS_ENV = "LORA_EXPLORER_RUN_MACS"
APP_RUN_MACS = float(os.environ.get(RUN_MACS_ENV, 2.5e13))  # about 4x the article's preset, not 100x
# The time limit counts what really costs time: multiply-adds and every step's fixed overhead (a run of a
# million one-row steps does almost no arithmetic and still takes many minutes). Default 5 minutes: the
# article's preset (about 150 s here, estimated at 255 s) is admitted; the server's one worker is not
# held for hours.
RUN_SECONDS_ENV = "LORA_EXPLORER_RUN_SECONDS"
APP_RUN_SECONDS = float(os.environ.get(RUN_SECONDS_ENV, 300))
@dataclass(frozen=True)
class Estimate:
    bytes: int  # peak memory the run allocates
    macs: float  # multiply-adds, all phases
    seconds: float  # about how long on a CPU like this project's (only for telling people)
    steps: int  # optimizer steps, both phases
    # The part of `seconds` spent making the data and pretraining the base: what a cached base saves, and what a
    # sweep pays once per seed rather than once per member
    pretrain_seconds: float = 0.0
    # The part of `seconds` spent fine-tuning: what a sweep's batch of members replaces by its own time
    finetune_seconds: float = 0.0


# Peak RSS is the live tensors plus what the allocator keeps. glibc serves a block from a heap when it is below
# its mmap threshold, which it raises to the size of any mapped block freed (up to 32 MiB); freed heap memory stays
# in the process while the next phase allocates blocks of other sizes, so with glibc's defaults one
# configuration's peak varied by up to 1.9x between processes (the order of frees, which thread allocated what).
# Every run therefore pins the threshold at 4 MiB (devices.steady_allocator) and gives freed memory back between
# its phases (devices.release_freed_memory); then peak RSS is 0.73-0.96 of the live count below, the same in
# every repetition (tests/test_budget.py, 12 shapes). ALLOCATOR_MARGIN covers the small blocks that still come
# from heaps (per-thread arenas, Python's objects) with room to spare, and stays under twice the bottom of that
# span, so the estimate is an upper bound that does not refuse honest runs.
ALLOCATOR_MARGIN = 1.25


def estimate(config: ExperimentConfig, base_cached: bool = False) -> Estimate:
    """The run's peak memory (an upper bound: live tensors times ALLOCATOR_MARGIN), multiply-adds and time (less
    the pretraining's with `base_cached`; the memory stays the bound of a run that pretrains)."""
    live = ESTIMATES[config.task](config)
    seconds = SECONDS_PER_RUN + (live.seconds - live.pretrain_seconds if base_cached else live.seconds)
    return dataclasses.replace(live, bytes=int(live.bytes * ALLOCATOR_MARGIN), seconds=seconds,
                               pretrain_seconds=0.0 if base_cached else live.pretrain_seconds)


def _linear_estimate(config: ExperimentConfig) -> Estimate:
    """The linear task's estimate: its sizes are all settings."""
    c = config
    item = BYTES_PER_ITEM[c.dtype]
    fast = choose_path(c) == "fast"
    weights = c.d_in * c.hidden + c.hidden * c.d_out  # both layers; also the multiply-adds of one row's forward
    rows = c.n_samples + c.n_eval
    theta = c.d_in * c.d_out
    # Memory, in items. make_tasks holds θ, Δθ and θ' at once, and both tasks' x and y.
    data = 2 * rows * (c.d_in + c.d_out)
    tasks = 3 * theta + data
    # Pretraining: weights, gradients, Adam's two moments; an evaluation chunk's activations.
    evaluation = min(EVAL_CHUNK, max(c.n_eval, c.n_samples)) * (c.hidden + c.d_out)
    pretraining = 4 * weights + evaluation
    # Fine-tuning: a copy of the base; the fast path keeps [x | H0] and the base residual for every row, the
    # full path gradients and moments for every weight. Merging copies the weights once more.
    finetuning = weights + (rows * (c.d_in + c.hidden + c.d_out) if fast else 3 * weights) + weights
    # DoRA builds W + s·B·A per layer in every step; PiSSA's SVD and OLoRA's QR hold two factors of W.
    largest = max(c.d_in * c.hidden, c.hidden * c.d_out)
    lora = c.method == "lora"
    from_weights = variants.starts_from_weights(c)
    finetuning += 2 * largest * (lora and c.use_dora) + 2 * largest * from_weights + dynamics_bytes(c) // item
    # Analysis: each layer's dense ΔW and weights in float64 for svdvals, about eight copies of the largest layer.
    # The floor: the end-to-end error θ'ᵀ − W2·W1 (or θ' itself) as a dense float64 d_out x d_in matrix and
    # svdvals' workspace, about three copies, after the spectra.
    floor_items = 3 * theta * 8 // item if has_floor(c) else 0
    # DoRA's merge builds W' = m ⊙ (W + sBA) / ‖·‖ densely: one more float64 temporary of the largest layer.
    dora_items = largest * 8 // item if lora and c.use_dora else 0
    # The full-rank shift's dense spectrum and the floor's come one after the other: the larger one counts.
    shift_items = 5 * theta * 4 // item if c.shift == "full_rank" else 0
    analysis_items = 8 * largest * 8 // item + max(shift_items, floor_items) + dora_items
    # Beside the analysis: the pretrained base, the fine-tuned copy (its own base weights) and the merged copy.
    peak_items = tasks + max(pretraining, finetuning + weights, analysis_items + 3 * weights)
    # Multiply-adds. Forward 1x, backward 2x per row; held-out loss after every epoch.
    per_epoch = 3 * c.n_samples * weights + c.n_eval * weights
    data_macs = 2 * rows * theta + (c.d_in * c.shift_rank * c.d_out if c.shift in RANKED_SHIFTS else 0)
    pretrain_macs = c.pretrain_epochs * per_epoch
    steps_per_epoch = math.ceil(c.n_samples / c.batch_size)
    if c.method == "full":
        finetune_macs = c.epochs * per_epoch
    elif fast:  # precompute H0 and E0 once; per step thin products and two products with W2 (see fast.py)
        thin = 6 * c.rank * (c.d_in + c.hidden + c.d_out)
        finetune_macs = rows * weights + c.epochs * (c.n_samples * thin + steps_per_epoch * 2 * c.rank
                                                     * c.hidden * c.d_out + c.n_eval * thin)
    else:
        finetune_macs = c.epochs * (per_epoch + 4 * rows * c.rank * (c.d_in + c.hidden + c.d_out))
    if lora and c.use_dora:  # per step and layer: B A, the row norms of W + s·B·A, twice (forward, backward)
        finetune_macs += 2 * c.epochs * steps_per_epoch * (c.rank + 2) * weights
    if from_weights:  # a full SVD costs a few times svdvals; QR about 2 m n k
        finetune_macs += 3 * (svd_macs(c.hidden, c.d_in) + svd_macs(c.d_out, c.hidden))
    svd_work = 3 * (svd_macs(c.hidden, c.d_in) + svd_macs(c.d_out, c.hidden))
    if from_weights:
        svd_work *= 2
    if has_floor(c):  # the floor's svdvals
        svd_work += svd_macs(c.d_out, c.d_in)
    if c.shift == "full_rank":
        svd_work += svd_macs(c.d_in, c.d_out)
    analysis_macs = 5 * c.n_eval * weights + 3 * (svd_macs(c.hidden, c.d_in) + svd_macs(c.d_out, c.hidden))
    if has_floor(c):  # the floor's W2·W1 and svdvals
        analysis_macs += c.d_out * c.hidden * c.d_in + svd_macs(c.d_out, c.d_in)
    if c.shift == "full_rank":
        analysis_macs += svd_macs(c.d_in, c.d_out)
    macs = data_macs + pretrain_macs + finetune_macs + analysis_macs
    steps = steps_per_epoch * (c.pretrain_epochs + c.epochs)
    weight_steps = steps_per_epoch * (c.pretrain_epochs + (c.epochs if c.method == "full" else 0)) * weights
    per_step = (steps_per_epoch * c.pretrain_epochs * 2 * SECONDS_PER_STEP["autograd"]
                + steps_per_epoch * c.epochs * (SECONDS_PER_STEP["fast"] if fast else 2 * SECONDS_PER_STEP["autograd"]))
    seconds = seconds_of(macs, svd_work, weight_steps, c.pretrain_epochs + c.epochs) + per_step
    pretrain_steps = steps_per_epoch * c.pretrain_epochs
    pretrain_seconds = ((data_macs + pretrain_macs) / MACS_PER_SECOND + c.pretrain_epochs * SECONDS_PER_EPOCH
                        + pretrain_steps * (2 * SECONDS_PER_STEP["autograd"] + weights * SECONDS_PER_WEIGHT_STEP))
    finetune_steps = steps_per_epoch * c.epochs
    finetune_seconds = (seconds_of(finetune_macs, 0, finetune_steps * weights * (c.method == "full"), c.epochs)
                        + finetune_steps * (SECONDS_PER_STEP["fast"] if fast else 2 * SECONDS_PER_STEP["autograd"]))
    return Estimate(int(peak_items * item), float(macs), seconds, steps, min(pretrain_seconds, seconds),
                    min(finetune_seconds, seconds))


# Reading the digits (their CSV parsed into Python floats, gzip's and the parser's code run for the first time)
# beside the tensors counted below. The default digits run's whole peak: 13 MiB in a fresh process, 18.3-18.7 MiB
# in a child forked from one that had imported torch (tests/peak_memory.py; it maps the library pages afresh).
# The data is read by the run itself: building a digits config reads nothing (task_specs.N_IMAGES).
DIGITS_LOAD_BYTES = 15 * 2**20


def _digits_estimate(config: ExperimentConfig) -> Estimate:
    """The digits task's estimate: 1,797 images of 64 pixels, a ReLU network on the autograd path."""
    c = config
    task = spec(c)
    item = BYTES_PER_ITEM[c.dtype]
    train_rows, eval_rows = task.rows(c)
    rows = train_rows + eval_rows
    shapes = task.layer_shapes(c)
    weights = sum(d_in * d_out + d_out for d_in, d_out in shapes.values())  # with biases
    largest = max(d_in * d_out for d_in, d_out in shapes.values())
    widest = max(d_out for _, d_out in shapes.values())
    # Memory, in items: the data (both tasks' images, the table read in float64), the model with gradients and
    # Adam's moments and a copy per phase, an evaluation chunk's activations; the spectra's float64 copies of
    # the largest layer (about six at once) beside the base, tuned and merged models (and, after full
    # fine-tuning, the tuned model's last gradients).
    data = rows * 65 * 8 // item + 2 * rows * 64
    training = 6 * weights + min(EVAL_CHUNK, rows) * 2 * widest + 3 * largest * 2 * int(c.use_dora)
    analysis_items = 6 * largest * 8 // item + (4 if c.method == "full" else 3) * weights
    peak = DIGITS_LOAD_BYTES + item * (data + max(training, analysis_items))
    per_epoch = 3 * train_rows * weights + 2 * eval_rows * weights  # forward and backward; loss and accuracy
    svds = sum(3 * svd_macs(d_out, d_in) for d_in, d_out in shapes.values())
    macs = (c.pretrain_epochs + c.epochs) * per_epoch + 12 * eval_rows * weights + svds
    steps = math.ceil(train_rows / c.batch_size) * (c.pretrain_epochs + c.epochs)
    seconds = (seconds_of(macs, svds, steps * weights, c.pretrain_epochs + c.epochs)
               + steps * len(shapes) * SECONDS_PER_STEP["autograd"])
    return Estimate(int(peak), float(macs), seconds, steps, *_epoch_shares(c, seconds))


# Reading the two texts (Python strings of up to 4 bytes a character, their UTF-32 copies and int64 ids, about a
# million characters in all) beside the tensors counted below.
TEXT_LOAD_BYTES = 48 * 2**20


def _text_estimate(config: ExperimentConfig) -> Estimate:
    """The text task's estimate: a small transformer on windows of characters, on the autograd path."""
    c = config
    task = spec(c)
    item = BYTES_PER_ITEM[c.dtype]
    shapes = task.layer_shapes(c)
    d, t, vocab = c.hidden, c.context, shapes["head"][1]
    weights = sum(d_in * d_out + d_out for d_in, d_out in shapes.values()) + (vocab + t) * d  # with embeddings
    largest = max(d_in * d_out for d_in, d_out in shapes.values())
    # Activations one token keeps for the backward pass: per block about 20 d (norms, q, k, v, attention's output,
    # the MLP's 4 d twice); the logits and their softmax (3 x vocab). No T x T attention weights: torch's CPU
    # attention (scaled_dot_product_attention, causal, float32 or float64) is the flash kernel, which keeps one
    # log-sum-exp per head and position instead (measured: 741 MiB at context 512, where T x T would be 1 GiB more).
    per_token = c.blocks * (20 * d + 2 * c.heads) + 3 * vocab + 2 * d
    training = 6 * weights + c.batch_size * t * per_token
    # Held-out chunks without gradients: the logits, their log-softmax and its gather (3 x vocab), and a block's
    # widest moment, the MLP's 4 d input and its GELU beside the residual stream and its norm (10 d).
    evaluation = 3 * weights + min(EVAL_CHUNK, c.n_eval) * t * (3 * vocab + 10 * d + c.heads)
    data = 2 * (c.n_samples + 2 * c.n_eval) * t * 8 // item  # x and y as int64, both texts' held-out windows
    analysis_items = 6 * largest * 8 // item + (4 if c.method == "full" else 3) * weights
    peak = TEXT_LOAD_BYTES + item * (data + max(training, evaluation, analysis_items))
    per_token_macs = c.blocks * (12 * d * d + 2 * t * d) + d * vocab  # forward, a token
    tokens = (c.pretrain_epochs + c.epochs) * (3 * c.n_samples + 2 * c.n_eval) * t
    svds = sum(3 * svd_macs(d_out, d_in) for d_in, d_out in shapes.values())
    # The pages' samples (text_samples.py): each model continues each prompt one character at a time, every
    # character a forward pass over the window so far.
    prompt = min(SAMPLE_PROMPT_CHARS, t)
    window_tokens = 2 * SAMPLE_PROMPTS * sum(min(prompt + i, t) for i in range(SAMPLE_CHARS))
    macs = tokens * per_token_macs + svds + window_tokens * per_token_macs
    steps = math.ceil(c.n_samples / c.batch_size) * (c.pretrain_epochs + c.epochs)
    forwards = 2 * SAMPLE_PROMPTS * SAMPLE_CHARS  # each a step's worth of Python without the backward pass
    seconds = (seconds_of(macs, svds, steps * weights, c.pretrain_epochs + c.epochs)
               + (steps + forwards / 3) * TEXT_STEP_MODULES * c.blocks * SECONDS_PER_STEP["autograd"])
    return Estimate(int(peak), float(macs), seconds, steps, *_epoch_shares(c, seconds))


def _epoch_shares(c: ExperimentConfig, seconds: float) -> tuple[float, float]:
    """Pretraining's and fine-tuning's parts of `seconds` where both phases take the same path: their shares of
    the epochs."""
    epochs = c.pretrain_epochs + c.epochs
    return seconds * c.pretrain_epochs / epochs, seconds * c.epochs / epochs


# What a text run's samples generate (text_samples.py reads these): prompts, their length, characters written
SAMPLE_PROMPTS, SAMPLE_PROMPT_CHARS, SAMPLE_CHARS = 2, 40, 100
# A transformer block runs about this many modules' worth of Python per step (six projections, two norms,
# attention, the activation, the residuals) compared with one of the MLP's layers.
TEXT_STEP_MODULES = 4

ESTIMATES = {"linear": _linear_estimate, "digits": _digits_estimate, "text": _text_estimate}  # by config.task

FLOOR_MAX_ELEMENTS = 4096 * 4096  # the floor needs a dense d_out x d_in SVD: not for wider maps than this


def has_floor(config: ExperimentConfig) -> bool:
    """Whether a run computes its loss floor: not where its method has no bound (variants.REACH: DoRA), nor for
    maps too wide for a dense SVD."""
    bounded = spec(config).linear_model and variants.REACH[variants.delta_kind(config)](config) is not None
    return bounded and config.d_in * config.d_out <= FLOOR_MAX_ELEMENTS


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while abs(n) >= 1024 and power < len(units) - 1:
        n, power = n / 1024, power + 1
    return f"{n:,.0f} B" if power == 0 else f"{n:,.1f} {units[power]}"


def check(config: ExperimentConfig, *, max_bytes: float, max_macs: float,
          max_seconds: float = math.inf) -> Estimate:
    """The estimate of `config`, or ConfigError saying what it would need, the limit and what to change."""
    return within(estimate(config), "this run", max_bytes=max_bytes, max_macs=max_macs, max_seconds=max_seconds,
                  less_memory="lower the training or held-out samples or the layer sizes",
                  less_work="lower the epochs, the samples or the layer sizes",
                  less_time="lower the epochs or the samples, or raise the batch size (every step costs time)")


def within(e: Estimate, what: str, *, max_bytes: float, max_macs: float, less_memory: str, less_work: str,
           max_seconds: float = math.inf, less_time: str | None = None) -> Estimate:
    """`e`, or ConfigError saying what `what` (a run, a grid) would need, the limit and what to change."""
    if e.bytes > max_bytes:
        raise ConfigError(f"{what} would need about {human_bytes(e.bytes)} of memory, more than the "
                          f"{human_bytes(max_bytes)} this server allows a run; {less_memory}")
    if e.macs > max_macs:
        raise ConfigError(f"{what} would take about {e.macs:.2g} multiply-adds (roughly {duration(e.seconds)} "
                          f"here), more than the {max_macs:.2g} this server allows a run; {less_work}")
    if e.seconds > max_seconds:
        raise ConfigError(f"{what} would take up to about {duration(e.seconds)} here ({e.steps:,} optimizer steps), "
                          f"more than the {duration(max_seconds)} this server allows a run; {less_time or less_work}")
    return e


def duration(seconds: float) -> str:
    """Seconds for people: '0.4 s', '42 s', '3 min', '2 h'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"
