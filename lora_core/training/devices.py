"""Where a run trains: the device ('auto' picks CUDA, then Apple MPS, then the CPU) and how many CPU threads."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..settings.config import ConfigError

# Models with fewer weights than this train on one CPU thread: their ops are too small to share, and on a
# 2-core laptop a second thread that waits for a busy core made the default preset 5-25x slower (measured).
ONE_THREAD_BELOW = 100_000


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to tune this way
        return None


_LIBC = _libc()
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
# Blocks from this size up are mapped on their own and go back to the system when freed. glibc's default moves
# this threshold up to the size of any such block freed (up to 32 MiB); every block below it then comes from a
# heap, where freed memory stays in the process while blocks of other sizes are allocated, and one run's peak RSS
# varied by up to 1.9x from process to process. Pinned at 4 MiB, RSS follows the live tensors (0.73-0.96 of
# budget.py's count, the same in every repetition), and a run is no slower: the small per-step blocks still
# come from the heap (the article's 1000 x 1000 layers are 3.8 MiB).
MMAP_THRESHOLD_BYTES = 4 << 20


def steady_allocator() -> None:
    """Pin glibc's mmap threshold (see MMAP_THRESHOLD_BYTES) for this process, so that the memory budget's
    estimate bounds what a run really takes (budget.py). Every run does it; a no-op off glibc."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_freed_memory() -> None:
    """Give what freed tensors left in glibc's heaps back to the system (malloc_trim), between a run's phases,
    so that one phase's leftovers do not sit beside the next one's peak. A no-op off glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def pick_device(name: str, dtype: str = "float32") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU; an explicit device that is missing raises ConfigError."""
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if has[d])
    if not has.get(name, False):
        raise ConfigError(f"device {name!r} is not available here; allowed: auto, cpu"
                          + "".join(f", {d}" for d in ("cuda", "mps") if has[d]))
    if name == "mps" and dtype == "float64":
        raise ConfigError("Apple MPS has no float64; use dtype float32 or device cpu")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """'cpu', or the accelerator's name, e.g. 'cuda (NVIDIA H200)'."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """Run the block on `threads` CPU threads (None: unchanged), restoring the previous count afterwards.
    The count is process-wide, so a concurrent run in another thread sees it too while the block runs."""
    before = torch.get_num_threads()
    change = device.type == "cpu" and threads is not None and threads != before
    if change:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


def threads_for(weights: int) -> int | None:
    """The CPU thread count for a model of `weights` weights: one for small models, torch's default otherwise."""
    return 1 if weights < ONE_THREAD_BELOW else None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings measure the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
