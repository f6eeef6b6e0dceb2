"""Singular values of dense matrices remembered by content, so that what a run recomputes unchanged is free.

A sweep's members share their pretrained base: every member's spectra ask for the same weights' singular values
(W before fine-tuning, each layer) and its floor for those of the same end-to-end error; a Playground run that
changes only r asks again too. At the article's shapes each is a 1000 x 1000 SVD (about 0.15 s on this
project's CPU), several per run. The key is the matrix's shape and a BLAKE2 digest of its bytes (about 4 ms for
8 MB), so a hit is exactly the same matrix, never a similar one; only the values (min(m, n) floats) are kept.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from collections import OrderedDict

import torch

MIN_ELEMENTS = 256 * 256  # smaller matrices cost less to decompose than to hash
KEEP = 64  # the most recently used results kept (each min(m, n) float64 values)

_kept: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_lock = threading.Lock()
calls = {"computed": 0, "remembered": 0}  # for tests and benchmarks


def _digest(matrix: torch.Tensor) -> bytes:
    """BLAKE2b of a contiguous CPU tensor's bytes, read in place (no copy, no NumPy)."""
    data = (ctypes.c_char * (matrix.numel() * matrix.element_size())).from_address(matrix.data_ptr())
    return hashlib.blake2b(memoryview(data), digest_size=20).digest()


def svdvals(matrix: torch.Tensor) -> torch.Tensor:
    """torch.linalg.svdvals of a float64 CPU matrix, from memory when the same matrix was decomposed before."""
    if matrix.numel() < MIN_ELEMENTS:
        return torch.linalg.svdvals(matrix)
    matrix = matrix.contiguous()
    key = (tuple(matrix.shape), matrix.dtype, _digest(matrix))
    with _lock:
        if key in _kept:
            _kept.move_to_end(key)
            calls["remembered"] += 1
            return _kept[key].clone()
    values = torch.linalg.svdvals(matrix)
    with _lock:
        calls["computed"] += 1
        _kept[key] = values.clone()
        while len(_kept) > KEEP:
            _kept.popitem(last=False)
    return values


def forget() -> None:
    """Drop every remembered result."""
    with _lock:
        _kept.clear()
