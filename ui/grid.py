"""The Compare page's grid (methods × ranks × α × seeds, and for the text task placements and a parameter
budget) ⇄ query parameters, beside the Playground's settings.

    /Compare?shift=low_rank&methods=lora,rslora,full&ranks=1,2,4,8&alphas=1,4,16&seeds=0
    /Compare?preset=text&methods=lora&placements=q,v;attention;mlp;all&budget=8192

No Streamlit here, so it is tested without it. A value that is not a choice is dropped with a warning.
"""

from __future__ import annotations

from typing import Any

from lora_core.settings.choices import TARGET_SETS, canonical_targets
from lora_core.settings.config import FIELDS
from lora_core.settings.variants import METHOD_SET_LABELS, METHOD_SETS

GRID_KEYS = ("methods", "ranks", "alphas", "seeds", "placements", "budget")
CHOICES: dict[str, tuple[Any, ...]] = {
    "methods": tuple(METHOD_SETS),
    "ranks": (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256),
    "alphas": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0),
    "seeds": tuple(range(10)),
    "placements": TARGET_SETS,
}
BUDGET_MAX = 10**9
LABELS = {"methods": "Methods", "ranks": "Ranks r", "alphas": "α values", "seeds": "Seeds",
          "placements": "Placements (target modules)", "budget": "Parameter budget"}
HELP = {"methods": "each a named set of the Playground's method settings: " + ", ".join(
            f"{k} = {v}" for k, v in METHOD_SET_LABELS.items()),
        "ranks": "every adapter method runs at each rank (full fine-tuning has none: it runs once per seed)",
        "alphas": "every adapter method runs at each α (the scale: α/r, or α/√r with rsLoRA)",
        "seeds": "each seed has its own data, pretrained base and initialisation",
        "placements": "the text model's modules that get adapters, one member per placement (none chosen: the "
                      "sidebar's target modules)",
        "budget": "trainable adapter parameters at most: each placement then trains at the largest rank that fits "
                  "(the ranks above unused), so placements are compared at equal cost; 0: no budget"}
DEFAULT_GRID: dict[str, Any] = {"methods": ["lora", "rslora", "full"], "ranks": [1, 2, 4, 8],
                                "alphas": [1.0, 4.0, 16.0], "seeds": [0], "placements": [], "budget": 0}
KIND = {"methods": str, "ranks": int, "alphas": float, "seeds": int, "placements": str, "budget": int}
SEPARATOR = {"placements": ";"}  # a placement has commas of its own ('q,v')
CHOICES_TEXT = {"placements": FIELDS["targets"].metadata["choices_text"]}  # a placement is a targets setting


OPTIONAL = ("placements", "budget")  # the text task's: in a link only when they differ from the default


def grid_params(grid: dict[str, Any]) -> dict[str, str]:
    """The grid as query parameters: '1,2,4' (an unused placements or budget left out)."""
    out = {}
    for key in GRID_KEYS:
        value = grid.get(key, DEFAULT_GRID[key])
        if key in OPTIONAL and value == DEFAULT_GRID[key]:
            continue
        values = value if isinstance(value, list) else [value]
        out[key] = SEPARATOR.get(key, ",").join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
    return out


def _value(kind: type, raw: str) -> Any:
    """'4' or '4.0' -> 4 for an int (never 1.5 -> 1), '0.5' -> 0.5 for a float, else the stripped text."""
    if kind is int:
        number = float(raw)
        if not number.is_integer():
            raise ValueError
        return int(number)
    return kind(raw.strip())


def parse_grid(params: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The grid from query parameters (defaults for what is absent), and one warning per value dropped."""
    grid = {k: list(v) if isinstance(v, list) else v for k, v in DEFAULT_GRID.items()}
    warnings: list[str] = []
    for key in GRID_KEYS:
        if key not in params:
            continue
        values = []
        for raw in str(params[key]).split(SEPARATOR.get(key, ",")):
            try:
                value = canonical_targets(raw) if key == "placements" else _value(KIND[key], raw)
            except ValueError:
                value = None
            if key == "budget":
                if value is None or not 0 <= value <= BUDGET_MAX:
                    warnings.append(f"budget={raw}: not a whole number from 0 to {BUDGET_MAX:,}")
                else:
                    grid[key] = value
                continue
            if value not in CHOICES[key]:
                allowed = CHOICES_TEXT.get(key) or "one of " + ", ".join(map(str, CHOICES[key]))
                warnings.append(f"{key}={raw}: not {allowed}")
            elif value not in values:
                values.append(value)
        if values:
            grid[key] = values
    return grid, warnings
