"""The command line's flags, read and checked without torch: one parser per command built from the config's
declarations, and `precheck`, which `python -m lora_core` runs before it imports anything heavy, so that a bad
value is refused in a fraction of a second instead of after torch has loaded (5-9 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from ..settings.config import (
    FIELDS,
    METHOD_SETS,
    PRESETS,
    ConfigError,
    ExperimentConfig,
    bounds_text,
    check_methods,
    cli_name,
    coerce,
    preset,
)

EXIT_BAD_INPUT = 2


def flag(name: str) -> str:
    """The CLI flag of a config field: 'shift_scale' -> '--shift-scale'."""
    return "--" + cli_name(name)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def config_parser(prog: str, description: str, axes: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A parser with --preset and one flag per configuration field but the `axes` (a sweep's own flags)."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--preset", default="default", choices=list(PRESETS),
                        help="starting configuration; flags below override it")
    for name, field in ((n, f) for n, f in FIELDS.items() if n not in axes):
        # A yes/no setting works as a bare flag (`--use-dora`) or with a value (`--use-dora false`).
        switch = {"nargs": "?", "const": "true"} if field.type == "bool" else {}
        parser.add_argument(flag(name), dest=name, default=None, metavar=name.upper(), **switch,
                            help=f"{field.metadata['help']} ({bounds_text(name)})")
    return parser


def config_from(args: argparse.Namespace) -> ExperimentConfig:
    """The preset with every given flag applied; ConfigError names a bad one."""
    overrides = {name: coerce(name, getattr(args, name)) for name in FIELDS if getattr(args, name, None) is not None}
    return preset(args.preset, **overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = config_parser("python -m lora_core",
                           "Pretrain a two-layer linear model (or, with --task digits, a small ReLU network on "
                           "handwritten digits), fine-tune it with LoRA on a shifted task, merge the adapter and "
                           "measure everything. `python -m lora_core sweep --help`: a grid of ranks, methods, α and "
                           "seeds.")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH ('-' for stdout)")
    parser.add_argument("--save-adapter", metavar="DIR", help="write the trained adapter in PEFT's format to DIR")
    return parser


def open_output(path: str | None, what: str = "--json") -> TextIO | None:
    """The --json (or --csv) file, opened and proven writable (one flushed byte) before any work, or ConfigError."""
    if path is None or path == "-":
        return None
    try:
        out = open(path, "w")  # noqa: SIM115 - kept open for the run, closed by main
        try:
            out.write(" ")
            out.flush()
            out.seek(0)
            out.truncate()
        except OSError:
            out.close()
            raise
    except OSError as error:
        raise ConfigError(f"{what} {path}: cannot write there ({error.strerror or error})") from None
    return out


def csv_text(fields: list[str], rows: list[dict]) -> str:
    """Rows of a table as CSV text with a header (the sweep's members, the inspector's modules)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _list(text: str, kind: Callable, what: str) -> list:
    """'1,2,4' -> [1, 2, 4]; ConfigError naming the flag for anything else."""
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"--{what} must be a comma-separated list of {kind.__name__}s, got {text!r}") from None
    if not values:
        raise ConfigError(f"--{what} needs at least one value")
    return values


def _integer(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError
    return int(value)


_integer.__name__ = "integer"


def sweep_parser() -> argparse.ArgumentParser:
    parser = config_parser("python -m lora_core sweep", "Fine-tune a grid of ranks, methods, α and seeds from one "
                           "pretrained base per seed and compare them (JSON and CSV).", axes=("targets",))
    parser.add_argument("--targets", nargs="+", dest="target_axis", metavar="TARGETS",
                        help="the text task's placements, each a targets setting (e.g. --targets q,v attention "
                             "fc1,fc2); default: the configuration's")
    parser.add_argument("--budget", help="a parameter budget: each placement's adapters at the largest rank whose "
                                         "trainable parameters fit it (--ranks unused)")
    parser.add_argument("--ranks", default="1,2,4,8", help="comma-separated ranks (default 1,2,4,8)")
    parser.add_argument("--methods", default="lora", help="comma-separated methods: " + ", ".join(METHOD_SETS))
    parser.add_argument("--alphas", help="comma-separated α values (default: the configuration's α)")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the configuration's seed)")
    parser.add_argument("--json", metavar="PATH", help="write the sweep as JSON to PATH ('-' for stdout)")
    parser.add_argument("--csv", metavar="PATH", help="write one row per member as CSV to PATH ('-' for stdout)")
    return parser


def sweep_grid(args: argparse.Namespace) -> tuple[list[int], list[str], list[float] | None, list[int] | None,
                                                 list[str] | None, int]:
    """The sweep's (ranks, methods, alphas or None, seeds or None, placements or None, budget or 0) from its
    flags; ConfigError names a bad one."""
    methods = check_methods(_list(args.methods, str.strip, "methods"))
    budget = _list(args.budget, _integer, "budget") if args.budget else [0]
    if len(budget) != 1 or budget[0] < 0:
        raise ConfigError(f"--budget must be one whole number of parameters, got {args.budget!r}")
    return (_list(args.ranks, _integer, "ranks"), methods,
            _list(args.alphas, float, "alphas") if args.alphas else None,
            _list(args.seeds, _integer, "seeds") if args.seeds else None,
            [coerce("targets", t) for t in args.target_axis] if args.target_axis else None, budget[0])


def precheck(argv: list[str]) -> int | None:
    """For the single run's command and `sweep`: parse `argv` and check every given setting on its own (type,
    bounds, choices) and a sweep's lists; EXIT_BAD_INPUT after one line on stderr, or None when the command
    may go on (it checks the rest, such as a rank against the layer sizes, once the library is loaded).
    `inspect` is left to its own parser."""
    if argv[:1] == ["inspect"]:
        return None
    sweep = argv[:1] == ["sweep"]
    args = (sweep_parser() if sweep else build_parser()).parse_args(argv[1:] if sweep else argv)
    try:  # argparse's own errors have exited with EXIT_BAD_INPUT above
        for name in FIELDS:
            if getattr(args, name, None) is not None:
                coerce(name, getattr(args, name))
        if sweep:
            sweep_grid(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return None
