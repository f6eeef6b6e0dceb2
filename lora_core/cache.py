"""Pretrained bases, cached by what decides them, in memory and on disk, so that changing only r, α, the
method or the shift never pretrains again.

A base depends on the model sizes, the original task (seed, n_samples, n_eval, dtype) and the pretraining
settings (pretrain_epochs, batch_size, lr), on the device type (CUDA rounds differently from the CPU), the torch
version and the code that pretrains. All of that is the key; a setting that does not matter for the task (the
linear task's sizes for the digits) is None in it. On disk each base is one safetensors file in the cache folder
(`~/.cache/lora-explorer` or the folder in $LORA_EXPLORER_CACHE; `off` keeps the cache in memory only) holding
the model's state (`layer1.weight`, ...) and, as JSON in its metadata, the key and the pretraining history. The
folder is safe to delete. A file that cannot be read, or whose key or contents do not match, is removed and the
base trained again; diverged or cancelled pretraining is never stored.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import math
import os
import shutil
import stat
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save_file

from .settings.config import BASE_FIELDS, ExperimentConfig, matters
from .settings.results import PhaseHistory
from .tasks import digits as digits_module
from .tasks import linear as tasks_module
from .tasks import linear_model as model_module
from .tasks import mlp as mlp_module
from .tasks import registry as task_kinds_module
from .tasks import text_data as text_data_module
from .tasks import text_model as text_model_module
from .tasks.data import Task
from .tasks.registry import kind
from .training import loop as training_module
from .training.loop import CancelCheck, ProgressCallback, report

CACHE_ENV = "LORA_EXPLORER_CACHE"
DEFAULT_DIR = "~/.cache/lora-explorer"
FORMAT = 2  # bump when the file layout changes (2: the model's whole state, any task)
# Every config field that changes the original task or its pretraining (declared `base` in config.py); the
# device enters the key as the type it resolved to ('auto' -> 'cpu'), so it is not taken from the config.
KEY_FIELDS = tuple(name for name in BASE_FIELDS if name != "device")
MEMORY_BYTES = 1 << 30  # the in-memory cache drops its oldest bases beyond this many bytes of weights

Pretrain = Callable[[ExperimentConfig, Task, torch.device, "ProgressCallback | None", "CancelCheck | None"],
                    tuple[str, PhaseHistory, nn.Module]]


@dataclass
class Entry:
    history: PhaseHistory
    weights: dict[str, torch.Tensor]  # the model's state_dict, on the device of the key


_memory: OrderedDict[str, Entry] = OrderedDict()
_lock = threading.Lock()


def cache_dir() -> Path | None:
    """The folder for cached bases, or None when $LORA_EXPLORER_CACHE is `off` (memory only) or names a home
    folder that does not exist (`~nosuchuser/x`: warned once, then memory only)."""
    value = os.environ.get(CACHE_ENV, DEFAULT_DIR).strip()
    if value.lower() in ("", "off", "0", "none"):
        return None
    try:
        return Path(value).expanduser()
    except RuntimeError:  # Python cannot find that user's home folder
        _warn_once(f"{CACHE_ENV}={value!r}: no such home folder; pretrained bases are kept in memory only")
        return None


@functools.lru_cache(maxsize=16)
def _warn_once(message: str) -> None:
    """One plain line on stderr, once per process and message (a warning's two lines with a source line would
    say nothing more to whoever started the server or the CLI)."""
    print(f"lora-explorer: {message}", file=sys.stderr, flush=True)


@functools.lru_cache(maxsize=8)
def _code_version(build: Pretrain) -> str:
    """A digest of the code that makes a base, so a changed task, model, loop or pretrain function rebuilds.
    Read once per process: the source files do not change under a running program."""
    digest = hashlib.sha256()
    for source in (tasks_module, model_module, digits_module, mlp_module, text_data_module, text_model_module,
                   task_kinds_module, training_module, build):
        try:
            digest.update(inspect.getsource(source).encode())
        except (OSError, TypeError):  # no source to read (a frozen install): fall back to the name
            digest.update(getattr(source, "__qualname__", source.__name__).encode())
    return digest.hexdigest()[:16]


def pretrain_key(config: ExperimentConfig, device: torch.device, build: Pretrain) -> dict[str, Any]:
    """Everything a pretrained base depends on, as a JSON-able dict."""
    values = config.to_dict()
    key: dict[str, Any] = {name: values[name] if matters(name, values) else None for name in KEY_FIELDS}
    key.update(device=device.type, torch=torch.__version__.split("+")[0], format=FORMAT, code=_code_version(build))
    return key


def key_name(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def cached_pretrain(config: ExperimentConfig, task: Task, device: torch.device, build: Pretrain,
                    on_progress: ProgressCallback | None = None,
                    cancel: CancelCheck | None = None) -> tuple[str, PhaseHistory, nn.Module, bool]:
    """`build(config, task, device, on_progress, cancel)` unless a base for the same key is cached.

    Returns (status, history, model, cached). A cached base's history is replayed through `on_progress`
    epoch by epoch, so a live chart still shows pretraining, and a callback that returns False still cancels.
    """
    key = pretrain_key(config, device, build)
    # The initial draw is overwritten on a hit; its own generator leaves torch's global random state alone.
    model = kind(config).build_model(config, torch.Generator().manual_seed(0)).to(device)
    entry = lookup(key, device, {n: (tuple(t.shape), t.dtype) for n, t in model.state_dict().items()})
    if entry is None:
        del model  # the template is not needed: pretraining draws its own, and would hold it meanwhile
        status, history, model = build(config, task, device, on_progress, cancel)
        if status == "ok":
            store(key, history, model)
        return status, history, model, False
    model.load_state_dict(entry.weights)
    history = PhaseHistory()
    accuracies = entry.history.eval_accuracy or [None] * len(entry.history.eval_loss)
    scores = list(zip(entry.history.train_loss, entry.history.eval_loss, accuracies, strict=True))
    for epoch, (train_loss, eval_loss, eval_accuracy) in enumerate(scores, 1):
        if cancel is not None and cancel():
            return "cancelled", history, model, True
        stop = report(on_progress, history, "pretrain", epoch, len(scores), train_loss, eval_loss, eval_accuracy)
        if stop:
            return stop, history, model, True
    return "ok", history, model, True


Layout = dict[str, tuple[tuple[int, ...], torch.dtype]]  # {state name: (shape, dtype)} of the model to fill


def has(key: dict[str, Any]) -> bool:
    """Whether a base for `key` is kept, in memory or on disk (not read: an estimate asks, many times a page)."""
    name = key_name(key)
    with _lock:
        if name in _memory:
            return True
    folder = cache_dir()
    return folder is not None and (folder / f"{name}.safetensors").is_file()


def lookup(key: dict[str, Any], device: torch.device, layout: Layout) -> Entry | None:
    """The cached base for `key` with the state `layout`: from memory, else from disk (then kept in memory), else
    None."""
    name = key_name(key)
    with _lock:
        if name in _memory:
            _memory.move_to_end(name)
            return _memory[name]
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{name}.safetensors"
    try:
        mode = path.lstat().st_mode
    except OSError:  # missing, or not even readable
        return None
    # Anything but a regular file (a folder, a FIFO that would block the read forever, a link) is damage too:
    # removed unread, so that the fresh base can take its place.
    entry = _read(path, key, device, layout) if stat.S_ISREG(mode) else None
    if entry is None:  # corrupt or stale: remove it, the caller trains again and stores a fresh one
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if stat.S_ISDIR(mode) else path.unlink()
        return None
    _remember(name, entry)
    return entry


def store(key: dict[str, Any], history: PhaseHistory, model: nn.Module) -> None:
    """Keep a finished base in memory and, unless the cache is off or unwritable, on disk."""
    weights = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    name = key_name(key)
    _remember(name, Entry(PhaseHistory(list(history.train_loss), list(history.eval_loss),
                                       list(history.eval_accuracy)), weights))
    folder = cache_dir()
    if folder is None:
        return
    metadata = {"key": json.dumps(key, sort_keys=True), "history": json.dumps(asdict(history))}
    tmp = folder / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.cpu().contiguous() for k, v in weights.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, folder / f"{name}.safetensors")  # atomic: readers see the old file or the new one
    except Exception as error:  # a read-only, full or odd disk only costs the next process its pretraining
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error).splitlines()[0]
        _warn_once(f"{CACHE_ENV}: cannot keep pretrained bases in {folder} ({why}); they are kept in memory only")


def clear_memory() -> None:
    """Forget the bases held in memory (the disk cache stays)."""
    with _lock:
        _memory.clear()


def _remember(name: str, entry: Entry) -> None:
    size = sum(t.numel() * t.element_size() for t in entry.weights.values())
    if size > MEMORY_BYTES:
        return
    with _lock:
        _memory[name] = entry
        _memory.move_to_end(name)
        while sum(t.numel() * t.element_size() for e in _memory.values() for t in e.weights.values()) > MEMORY_BYTES:
            _memory.popitem(last=False)


def _read(path: Path, key: dict[str, Any], device: torch.device, layout: Layout) -> Entry | None:
    """The entry in `path` if it is intact, made for `key` and has the state `layout`, else None."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if json.loads(metadata.get("key", "null")) != key or set(f.keys()) != set(layout):
                return None
            weights = {name: f.get_tensor(name).clone() for name in layout}
        history = PhaseHistory(**json.loads(metadata["history"]))
    except Exception:  # any damage (truncated file, bad header, bad JSON) means: rebuild
        return None
    epochs = key["pretrain_epochs"]
    scores = history.train_loss + history.eval_loss + history.eval_accuracy
    if (any((tuple(weights[n].shape), weights[n].dtype) != layout[n] for n in layout)
            or not all(torch.isfinite(t).all() for t in weights.values())
            or len(history.train_loss) != epochs or len(history.eval_loss) != epochs
            or len(history.eval_accuracy) not in (0, epochs)
            or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in scores)):
        return None
    return Entry(history, {n: t.to(device) for n, t in weights.items()})
