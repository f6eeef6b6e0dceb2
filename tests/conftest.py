"""Shared test set-up: the whole suite caches pretrained bases in a temporary folder, never in ~/.cache."""

from __future__ import annotations

import os

import pytest

from lora_core.cache import CACHE_ENV


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
