"""The digits task: scikit-learn's bundled 8×8 handwritten digits, a held-out split fixed by the seed, and the
shifts fine-tuning adapts to (rotated, mirrored, inverted, noised, pixels permuted, classes held out).

The 1,797 images ship inside scikit-learn (`sklearn/datasets/data/digits.csv.gz`, what `load_digits` reads);
this module reads that file directly, so nothing is downloaded and `lora_core` never imports scikit-learn (nor
SciPy behind it). tests/test_digits.py checks the result equals `sklearn.datasets.load_digits()`.

    x: [n, 64] pixels scaled to [0, 1] (the same scale for every split), y: [n] class indices 0-9
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..settings.config import ConfigError, ExperimentConfig
from ..settings.task_specs import CLASSES, PIXELS, SIDE, split_sizes
from .data import Split, Task, rng

PIXEL_MAX = 16.0  # the data's pixel values run from 0 to 16
DATA_FILE = ("datasets", "data", "digits.csv.gz")  # inside the scikit-learn package


def data_path() -> Path:
    """Where scikit-learn keeps the digits; ConfigError when scikit-learn is not installed."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the digits task reads scikit-learn's bundled digits: pip install scikit-learn")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*DATA_FILE)


@functools.lru_cache(maxsize=1)
def load() -> tuple[torch.Tensor, torch.Tensor]:
    """(images: [1797, 64] float64 in 0..16, labels: [1797] int64), read once per process."""
    with gzip.open(data_path(), "rt") as f:
        rows = [[float(v) for v in line.split(",")] for line in f if line.strip()]
    table = torch.tensor(rows, dtype=torch.float64)
    return table[:, :PIXELS].contiguous(), table[:, PIXELS].long()


def scaled(images: torch.Tensor) -> torch.Tensor:
    """Pixels from 0..16 to [0, 1], the one scale of every split."""
    return images / PIXEL_MAX


def held_out_classes(config: ExperimentConfig) -> tuple[int, ...]:
    """The classes kept out of pretraining (the last `held_out` digits) under the held_out shift, else none."""
    if config.digits_shift != "held_out":
        return ()
    return tuple(range(CLASSES - config.held_out, CLASSES))


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images [n, 64] turned counter-clockwise by `degrees` about their centre (bilinear, zeros outside).
    A multiple of 90° maps pixel centres onto pixel centres, so it equals torch.rot90 up to rounding."""
    n = images.shape[0]
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # affine_grid maps output coordinates to input ones: the inverse rotation (y axis points down in images).
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype).expand(n, 2, 3)
    grid = F.affine_grid(matrix, [n, 1, SIDE, SIDE], align_corners=False)
    turned = F.grid_sample(images.view(n, 1, SIDE, SIDE), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    return turned.reshape(n, PIXELS)


def mirror(images: torch.Tensor) -> torch.Tensor:
    """Images [n, 64] flipped left to right."""
    return images.view(-1, SIDE, SIDE).flip(-1).reshape(-1, PIXELS)


def pixel_order(seed: int) -> torch.Tensor:
    """The permuted shift's fixed order of the 64 pixels, drawn from the seed's shift stream."""
    return torch.randperm(PIXELS, generator=rng(seed, "shift"))


# Each shift: (images [n, 64] in [0, 1], config, generator for the noise) -> shifted images. held_out keeps the
# images and adds the classes pretraining never saw (make_digit_tasks).
SHIFT_TRANSFORMS = {
    "rotated": lambda x, c, g: rotate(x, c.angle),
    "mirrored": lambda x, c, g: mirror(x),
    "inverted": lambda x, c, g: 1.0 - x,
    "noised": lambda x, c, g: x + c.noise * torch.randn(x.shape, generator=g, dtype=x.dtype),
    "permuted": lambda x, c, g: x[:, pixel_order(c.seed)],
    "held_out": lambda x, c, g: x,
}


def shifted_images(images: torch.Tensor, config: ExperimentConfig, generator: torch.Generator) -> torch.Tensor:
    """`images` [n, 64] (scaled to [0, 1]) under the config's digits shift; `generator` draws the noise."""
    return SHIFT_TRANSFORMS[config.digits_shift](images, config, generator)


def split_indices(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows) of the n images, a permutation fixed by the seed."""
    order = torch.randperm(n, generator=rng(seed, "original"))
    n_eval = split_sizes(n)[1]
    return order[n_eval:], order[:n_eval]


def make_digit_tasks(config: ExperimentConfig, device: torch.device | str = "cpu") -> tuple[Task, Task]:
    """The original task (the digits, without the held-out classes under that shift) and the shifted one (every
    class, shifted images), on the same training and held-out rows. Tasks have no θ."""
    dtype = getattr(torch, config.dtype)
    images, labels = load()
    x = scaled(images).to(dtype)
    train_rows, eval_rows = split_indices(config.seed, len(labels))
    hidden_classes = torch.tensor(held_out_classes(config), dtype=torch.long)

    def pretraining(rows: torch.Tensor) -> Split:
        """The rows of the classes pretraining sees, unshifted."""
        rows = rows[~torch.isin(labels[rows], hidden_classes)]
        return Split(x[rows].to(device), labels[rows].to(device))

    g = rng(config.seed, "shifted")
    moved = {"train": shifted_images(x[train_rows], config, g), "eval": shifted_images(x[eval_rows], config, g)}
    original = Task(None, pretraining(train_rows), pretraining(eval_rows))
    # The shifted splits keep the rows in the order above: their images were transformed in that order.
    shifted = Task(None, Split(moved["train"].to(device), labels[train_rows].to(device)),
                   Split(moved["eval"].to(device), labels[eval_rows].to(device)))
    return original, shifted


def held_out_samples(seed: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions in the held-out split, their unshifted images [count, 64] in [0, 1]) of the samples a page
    shows: one digit of each class first, then the next rows."""
    images, labels = load()
    _, eval_rows = split_indices(seed, len(labels))
    eval_labels = labels[eval_rows]
    firsts = [int((eval_labels == c).nonzero()[0]) for c in range(CLASSES) if (eval_labels == c).any()]
    rest = [i for i in range(len(eval_rows)) if i not in firsts]
    positions = torch.tensor((firsts + rest)[:count], dtype=torch.long)
    return positions, scaled(images[eval_rows[positions]])


SAMPLES = 12  # held-out digits a result carries for the pages' sample grid


def sample_grid(config: ExperimentConfig, base: nn.Module, merged: nn.Module, shifted: Task) -> list[dict]:
    """A few held-out digits before and after the shift, with the base's and the fine-tuned model's predicted
    class on the shifted image (pixels rounded to 3 decimals: they are for drawing)."""
    positions, originals = held_out_samples(config.seed, SAMPLES)
    x_shifted = shifted.eval.x[positions.to(shifted.eval.x.device)]
    return [{"label": int(label), "original": [round(v, 3) for v in before.tolist()],
             "shifted": [round(v, 3) for v in after.tolist()], "base": b, "adapted": a}
            for label, before, after, b, a in zip(shifted.eval.y[positions].tolist(), originals, x_shifted.cpu(),
                                                  _classes(base, x_shifted), _classes(merged, x_shifted), strict=True)]


def _classes(model: nn.Module, x: torch.Tensor) -> list[int]:
    """The class `model` predicts for each row of x: [n, d_in]."""
    return model(x).argmax(-1).tolist()
