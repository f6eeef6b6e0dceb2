"""lora_core needs only torch and safetensors: importing all of it pulls in no app library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import lora_core

APP_LIBRARIES = ("streamlit", "plotly", "pandas")


def test_importing_every_lora_core_module_loads_no_app_library():
    modules = [f"lora_core.{m.name}" for m in pkgutil.iter_modules(lora_core.__path__) if m.name != "__main__"]
    assert {"lora_core.experiment", "lora_core.analysis", "lora_core.cli"} <= set(modules)
    code = f"import sys; import {', '.join(modules)}; print([m for m in {APP_LIBRARIES!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout
