"""The fine-tuning paths as one table; path_rule.choose_path picks one for a config."""

from __future__ import annotations

from ..settings.path_rule import choose_path  # noqa: F401 - the rule, re-exported beside the table it chooses from
from .fast import train_fast
from .loop import train

TRAINERS = {"autograd": train, "fast": train_fast}
