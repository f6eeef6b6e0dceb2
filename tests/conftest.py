"""Shared test set-up: the whole suite caches pretrained bases in a temporary folder, never in ~/.cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lora_core.cache import CACHE_ENV
from lora_core.serving.prewarm import PREWARM_ENV
from tests.artifacts import ARTIFACTS


def pytest_configure(config):
    """Under pytest-xdist (`-n 2`, as scripts/test.sh runs it) two workers share the two cores, so every process
    of the suite (workers, the servers and scripts they start) uses one torch thread: torch's OpenMP threads slow
    5-25x when there are more of them than free cores, as two processes with two threads each would make. One
    thread changes no result the tests check; the budget test's peaks were the same (within 3 %) at 1 and 2."""
    if hasattr(config, "workerinput"):
        os.environ["OMP_NUM_THREADS"] = "1"  # the subprocesses' torch reads it when it loads
        torch.set_num_threads(1)


# A server of the suite does not pretrain the lessons' bases in the background (tests/test_prewarm.py tests that):
# it would share the two cores with the tests' own runs. Set before any server or AppTest starts.
os.environ[PREWARM_ENV] = "off"

# The files that take longest, first (scripts/test.sh prints the slowest tests): pytest-xdist hands out whole files
# in the collected order, and a long file that started last would leave the other worker idle at the end.
SLOW_FILES_FIRST = ("test_budget.py", "browser/test_browser_app.py", "browser/test_load.py",
                    "browser/test_browser_more.py", "browser/test_browser_room.py", "browser/test_browser_server.py",
                    "test_sweep_fast.py")


def pytest_collection_modifyitems(items):
    tests = Path(__file__).parent
    rank = {str(tests / name): i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(str(item.path), len(rank)))  # stable: each file keeps its own order


def pytest_sessionstart(session):
    """timings.txt holds this run's measured figures only (tests/browser/server_probe.report appends to it);
    under pytest-xdist the controller clears it once, before its workers start."""
    if not hasattr(session.config, "workerinput"):
        (ARTIFACTS / "timings.txt").unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _temporary_base_cache(tmp_path_factory):
    """Point $LORA_EXPLORER_CACHE at a fresh folder for this session (subprocesses inherit it too)."""
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("base-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before
