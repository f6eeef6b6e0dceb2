"""lora_core needs only torch and safetensors: importing all of it pulls in no app library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import lora_core

APP_LIBRARIES = ("streamlit", "plotly", "pandas")


def test_importing_every_lora_core_module_loads_no_app_library():
    found = pkgutil.walk_packages(lora_core.__path__, "lora_core.")
    modules = [m.name for m in found if m.name != "lora_core.__main__"]
    assert {"lora_core.experiment", "lora_core.measure.analysis", "lora_core.cli.main"} <= set(modules)
    code = f"import sys; import {', '.join(modules)}; print([m for m in {APP_LIBRARIES!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout


def test_the_public_api_resolves_every_name_and_import_lora_core_loads_no_torch():
    code = ("import sys, lora_core; before = 'torch' in sys.modules\n"
            "names = [n for n in lora_core.__all__ if getattr(lora_core, n) is None]\n"
            "print(before, names, lora_core.preset('default').task)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["False", "[]", "linear"], out.stdout
    assert {"preset", "run_experiment", "run_sweep", "LoRALinear", "add_lora", "merge_lora", "TwoLayerLinear",
            "inspect_adapter", "save_adapter"} <= set(lora_core.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lora_core.nope  # noqa: B018
