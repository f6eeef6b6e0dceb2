"""The commands of `python -m lora_core`, as one table: the first argument names one, else it is a single run."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .inspect_command import inspect_main
from .run_command import run_main
from .sweep_command import sweep_main

COMMANDS: dict[str, Callable[[list[str]], int]] = {"sweep": sweep_main, "inspect": inspect_main}


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (default: the process's arguments) names; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return run_main(argv)
