"""A facilitator's challenge: a task and the settings everyone shares, a goal, and which settings participants
may change; a run meets it when its shared settings are the challenge's and it reaches the goal. The leaderboard
ranks each participant's best run that meets it; ties go to the earlier run.

Goals, one table: `loss_at_most` (merged loss on the shifted data <= `threshold`, the fewest trainable
parameters win, then the lower loss) and `accuracy_within` (at most `threshold` trainable parameters, the best
accuracy on the shifted data wins)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..settings.config import LABELS, ConfigError, ExperimentConfig, make_config


@dataclass(frozen=True)
class Goal:
    label: str  # what the Room page says, with {threshold}
    reached: Callable[[dict[str, Any], float], bool]  # (board row, threshold)
    score: Callable[[dict[str, Any]], tuple]  # lower is better


GOALS = {
    "loss_at_most": Goal("merged loss on the shifted data at most {threshold:g}, with the fewest trainable parameters",
                         lambda row, t: row["loss"] is not None and row["loss"] <= t,
                         lambda row: (row["params"], row["loss"])),
    "accuracy_within": Goal("the best accuracy on the shifted digits with at most {threshold:,.0f} trainable "
                            "parameters",
                            lambda row, t: row["accuracy"] is not None and row["params"] <= t,
                            lambda row: (-row["accuracy"], row["params"])),
}


def rules(config: ExperimentConfig, goal: str, threshold: float, allowed: list[str]) -> dict[str, Any]:
    """A challenge's rules from the facilitator's settings; ConfigError for an unknown goal or setting."""
    if goal not in GOALS:
        raise ConfigError(f"unknown goal {goal!r}; allowed: {', '.join(GOALS)}")
    unknown = [a for a in allowed if a not in LABELS]
    if unknown:
        raise ConfigError(f"not Playground settings: {', '.join(unknown)}")
    if not threshold > 0:
        raise ConfigError(f"the goal's threshold must be positive, got {threshold}")
    shared = {k: v for k, v in config.to_dict().items() if k in LABELS and k not in allowed}
    return {"task": config.task, "shared": shared, "goal": goal, "threshold": float(threshold),
            "allowed": list(allowed)}


def describe(challenge: dict[str, Any]) -> str:
    return GOALS[challenge["goal"]].label.format(threshold=challenge["threshold"])


def meets(challenge: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether a board row is a run under the challenge's shared settings that reaches its goal."""
    config = row.get("config") or {}
    if row["task"] != challenge["task"] or any(config.get(k) != v for k, v in challenge["shared"].items()):
        return False
    return GOALS[challenge["goal"]].reached(row, challenge["threshold"])


def leaderboard(challenge: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each participant's best run that meets the challenge, best first; ties by time (earlier first)."""
    score = GOALS[challenge["goal"]].score
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not meets(challenge, row):
            continue
        kept = best.get(row["session"])
        if kept is None or (score(row), row["at"]) < (score(kept), kept["at"]):
            best[row["session"]] = row
    return sorted(best.values(), key=lambda row: (score(row), row["at"]))


def playground_settings(challenge: dict[str, Any]) -> ExperimentConfig:
    """The settings a participant starts from (the shared ones; the rest at their defaults)."""
    return make_config(**challenge["shared"])
