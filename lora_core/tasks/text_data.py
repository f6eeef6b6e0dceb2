"""The text task's data: two kinds of English-and-code text that ship with Python itself, as characters.

- the documentation: `pydoc_data.topics`, the ~465,000 characters of help text `help()` shows (what the base
  model learns);
- the code: the source of a fixed list of pure-Python standard-library modules (`inspect.getsource`), what the
  `code` shift fine-tunes on; the `reversed` shift is the documentation read backwards, where every
  next-character statistic turns around and a low-rank change falls much further behind full fine-tuning than
  on the code (README, tests/test_text.py).

Characters are tokens: printable ASCII and the newline (VOCAB); anything else (a curly quote, a degree sign)
is the one unknown token, so a text the base never saw cannot crash a run. A split is `n` windows of `context`
characters at offsets drawn from the seed, from the first 90 % of a text for training and the last 10 % for
held-out evaluation (the two never overlap):

    x: [n, context] token ids, y: [n, context] the next character of each position
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable
from pydoc_data import topics  # the standard library's help text, a data module

import torch

from ..settings.config import ExperimentConfig
from ..settings.task_specs import TEXT_VOCAB as VOCAB
from .data import Split, Task, rng

UNKNOWN = 0  # the id of every character outside VOCAB's printable ones
TRAIN_FRACTION = 0.9
CODE_MODULES = ("textwrap", "string", "fractions", "heapq", "bisect", "colorsys", "shlex", "difflib", "calendar",
                "json.decoder", "json.encoder", "statistics", "functools", "dataclasses", "enum", "pprint", "glob",
                "fnmatch", "contextlib", "copy", "csv", "base64", "uuid", "random")
# Character code -> token id for the first 128 codes (the rest are UNKNOWN): id 0 unknown, then VOCAB's order.
_IDS = torch.zeros(128, dtype=torch.long)
for _i, _ch in enumerate(VOCAB[1:], start=1):
    _IDS[ord(_ch)] = _i


def documentation() -> str:
    """The help topics of `pydoc_data.topics`, in the order of their names."""
    return "\n".join(topics.topics[name] for name in sorted(topics.topics))


def code() -> str:
    """The source of CODE_MODULES, one after another."""
    return "\n".join(inspect.getsource(importlib.import_module(name)) for name in CODE_MODULES)


# The texts a run can learn: the base's and each shift's (config.text_shift), by name.
TEXTS: dict[str, Callable[[], str]] = {
    "documentation": documentation,
    "code": code,
    "reversed": lambda: documentation()[::-1],
}


def encode(text: str) -> torch.Tensor:
    """Token ids [len(text)] of `text`: its characters in VOCAB, every other one UNKNOWN."""
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    ids = torch.full_like(codes, UNKNOWN)
    small = codes < 128
    ids[small] = _IDS[codes[small]]
    return ids


def decode(ids: list[int] | torch.Tensor) -> str:
    """The characters of token ids (the unknown token as '\ufffd')."""
    return "".join(VOCAB[int(i)] if int(i) else "\ufffd" for i in ids)


@functools.lru_cache(maxsize=4)
def text_ids(name: str) -> torch.Tensor:
    """The token ids of TEXTS[name], read and encoded once per process."""
    return encode(TEXTS[name]())


def windows(ids: torch.Tensor, n: int, context: int, generator: torch.Generator) -> Split:
    """n windows of `context` tokens of `ids` at random offsets, each with its next tokens."""
    offsets = torch.randint(0, ids.numel() - context - 1, (n,), generator=generator)
    positions = offsets[:, None] + torch.arange(context)
    return Split(ids[positions], ids[positions + 1])


def text_task(name: str, config: ExperimentConfig, stream: str, device: torch.device | str) -> Task:
    """Training and held-out windows of text `name` (the base's or the shift's), drawn from `stream`."""
    ids = text_ids(name)
    cut = int(ids.numel() * TRAIN_FRACTION)
    g = rng(config.seed, stream)
    splits = (windows(ids[:cut], config.n_samples, config.context, g),
              windows(ids[cut:], config.n_eval, config.context, g))
    train, held_out = (Split(s.x.to(device), s.y.to(device)) for s in splits)
    return Task(None, train, held_out)


def make_text_tasks(config: ExperimentConfig, device: torch.device | str = "cpu") -> tuple[Task, Task]:
    """(the documentation, the shift's text): what the base learns, what fine-tuning adapts it to."""
    return (text_task("documentation", config, "original", device),
            text_task(config.text_shift, config, "shifted", device))
