"""How a setting is declared (`knob`: a dataclass field with everything known about it) and the small helpers its
checks share: reading a number as typed, quoting a bad value short. Nothing of lora_core below it."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def knob(default: Any, help: str, *, label: str | None = None, lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None, choice_labels: dict[str, str] | None = None,
         positive: bool = False, step: float | None = None, slider: tuple[float, float | None] | None = None,
         group: str | None = None, base: bool = False, only_if: dict[str, Any] | None = None,
         maths: str | None = None, spelling: Any = None, choices_text: str | None = None) -> Any:
    """A config field with everything known about it, in `metadata`:

    help, label: the flag's help and the widget's label (no label: not a Playground setting, not in the URL);
    lo, hi: inclusive bounds (ints); positive: > 0 (floats); choices and their shown labels;
    step: a number input's step; slider: shown as a slider over this span (None: up to what the model allows;
    a value outside it widens it);
    group: where the Playground shows it ("main" above, "more" in the expander);
    base: whether it shapes the pretrained base (so it is part of the base cache's key);
    only_if: {field: value, ...} when the setting matters only while every such field has that value (or one of
    a tuple of them) (`matters`);
    maths: one line (Markdown with LaTeX) saying what the setting changes, shown under its widget;
    spelling: text -> the choice it means (a flag or link may write a choice another way); choices_text: the
    choices in words, where listing them all would be too long.
    """
    meta = {"help": help, "label": label, "lo": lo, "hi": hi, "choices": choices, "choice_labels": choice_labels,
            "positive": positive, "step": step, "slider": slider, "group": group, "base": base,
            "only_if": only_if, "maths": maths, "spelling": spelling, "choices_text": choices_text}
    return field(default=default, metadata=meta)


def parse_number(text: str) -> int | float:
    """'20' -> 20 exactly (an integer of any length stays exact), '1e3' -> 1000.0."""
    try:
        return int(text.strip())
    except ValueError:
        return float(text)


def raise_(error: type[Exception]) -> Any:
    raise error


def short(value: Any) -> str:
    """A value's repr for a message, cut short (a link may carry 400 digits)."""
    return cut(repr(value))


def cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
