"""The Compare page's grid (methods × ranks × α × seeds) ⇄ query parameters, beside the Playground's settings.

    /Compare?shift=low_rank&methods=lora,rslora,full&ranks=1,2,4,8&alphas=1,4,16&seeds=0

No Streamlit here, so it is tested without it. A value that is not a choice is dropped with a warning.
"""

from __future__ import annotations

from typing import Any

from lora_core.settings.variants import METHOD_SET_LABELS, METHOD_SETS

GRID_KEYS = ("methods", "ranks", "alphas", "seeds")
CHOICES: dict[str, tuple[Any, ...]] = {
    "methods": tuple(METHOD_SETS),
    "ranks": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256),
    "alphas": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    "seeds": tuple(range(10)),
}
LABELS = {"methods": "Methods", "ranks": "Ranks r", "alphas": "α values", "seeds": "Seeds"}
HELP = {"methods": "each a named set of the Playground's method settings: " + ", ".join(
            f"{k} = {v}" for k, v in METHOD_SET_LABELS.items()),
        "ranks": "every adapter method runs at each rank (full fine-tuning has none: it runs once per seed)",
        "alphas": "every adapter method runs at each α (the scale: α/r, or α/√r with rsLoRA)",
        "seeds": "each seed has its own data, pretrained base and initialisation"}
DEFAULT_GRID: dict[str, list[Any]] = {"methods": ["lora", "rslora", "full"], "ranks": [1, 2, 4, 8],
                                      "alphas": [1.0, 4.0, 16.0], "seeds": [0]}
KIND = {"methods": str, "ranks": int, "alphas": float, "seeds": int}


def grid_params(grid: dict[str, list[Any]]) -> dict[str, str]:
    """The grid as query parameters: '1,2,4'."""
    return {key: ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in grid[key]) for key in GRID_KEYS}


def _value(kind: type, raw: str) -> Any:
    """'4' or '4.0' -> 4 for an int (never 1.5 -> 1), '0.5' -> 0.5 for a float, else the stripped text."""
    if kind is int:
        number = float(raw)
        if not number.is_integer():
            raise ValueError
        return int(number)
    return kind(raw.strip())


def parse_grid(params: dict[str, str]) -> tuple[dict[str, list[Any]], list[str]]:
    """The grid from query parameters (defaults for what is absent), and one warning per value dropped."""
    grid, warnings = {k: list(v) for k, v in DEFAULT_GRID.items()}, []
    for key in GRID_KEYS:
        if key not in params:
            continue
        values = []
        for raw in str(params[key]).split(","):
            try:
                value = _value(KIND[key], raw)
            except ValueError:
                value = None
            if value not in CHOICES[key]:
                warnings.append(f"{key}={raw}: not one of {', '.join(map(str, CHOICES[key]))}")
            elif value not in values:
                values.append(value)
        if values:
            grid[key] = values
    return grid, warnings
