"""What a lesson is made of (lessons.py holds the table of them): its question and choices, its runs, and the
reveal a function of the finished runs writes, with the bars of its chart."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .settings.results import ExperimentResult
from .sweep import SweepRequest, SweepResult


@dataclass(frozen=True)
class Bar:
    """One bar of a reveal's chart: a member's value, and the best any adapter of its kind could do (if known)."""

    label: str
    value: float
    floor: float | None = None


@dataclass(frozen=True)
class Reveal:
    text: str  # Markdown, every number from the runs
    answer: str  # the choice the runs support (one of the lesson's choices)
    bars: list[Bar]
    y_title: str  # the chart's y axis, with its unit
    numbers: dict[str, float] = field(default_factory=dict)  # the figures the text quotes, by name (tests)


@dataclass(frozen=True)
class Lesson:
    id: str  # the URL's ?lesson=<id>
    title: str
    question: str  # Markdown
    choices: tuple[str, ...]
    runs: Callable[[], SweepRequest]
    reveal: Callable[[SweepResult], Reveal]
    explore: str  # the page that opens with the lesson's settings: "Playground" or "Compare"


def merged(m: ExperimentResult) -> float:
    """The merged model's loss on the shifted task's held-out data."""
    return m.losses["merged_on_shifted"]


def accuracy(m: ExperimentResult, key: str) -> float:
    """A held-out accuracy in percent, e.g. key 'merged_on_original'."""
    return 100 * m.accuracies[key]
