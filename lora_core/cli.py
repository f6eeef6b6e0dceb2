"""`python -m lora_core`: run one experiment from the command line and write its result as JSON.

Every configuration field is a flag (`shift_scale` -> `--shift-scale`), so the CLI, the app's URL and the
JSON's `config` share one set of names. Bad input exits with status 2 and one line; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from .config import FIELDS, PRESETS, ConfigError, bounds_text, coerce, preset
from .experiment import run_experiment
from .results import Progress

EXIT_BAD_INPUT = 2


def flag(name: str) -> str:
    """The CLI flag of a config field: 'shift_scale' -> '--shift-scale'."""
    return "--" + name.replace("_", "-")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lora_core", description="Pretrain a two-layer linear model, fine-tune it "
                     "with LoRA on a shifted task, merge the adapter and measure everything.")
    parser.add_argument("--preset", default="default", choices=list(PRESETS),
                        help="starting configuration; flags below override it")
    for name, field in FIELDS.items():
        parser.add_argument(flag(name), dest=name, default=None, metavar=name.upper(),
                            help=f"{field.metadata['help']} ({bounds_text(name)})")
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH ('-' for stdout)")
    parser.add_argument("--save-adapter", metavar="DIR", help="write the trained adapter in PEFT's format to DIR")
    return parser


def _print_progress(p: Progress) -> None:
    print(f"{p.phase:8s} epoch {p.epoch:>4}/{p.epochs}  train {p.train_loss:.6g}  eval {p.eval_loss:.6g}",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = {name: coerce(name, getattr(args, name)) for name in FIELDS if getattr(args, name) is not None}
        config = preset(args.preset, **overrides)
        if args.save_adapter and config.method != "lora":
            raise ConfigError("--save-adapter needs --method lora (full fine-tuning has no adapter)")
        result = run_experiment(config, on_progress=_print_progress, save_adapter_to=args.save_adapter)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, OSError, MemoryError) as error:  # e.g. out of memory, unwritable folder
        print(f"error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)
        return 1
    text = result.to_json(indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    print(summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    return 0 if result.status == "ok" else 1


def summary(result) -> str:
    """A few human-readable lines about a finished run."""
    lines = [f"status {result.status} on {result.device} ({result.path} path)"]
    if result.message:
        lines.append(result.message)
    lines += [f"  {key:20s} {value:.6g}" for key, value in result.losses.items() if value is not None]
    if result.merge_max_abs_diff is not None:
        lines.append(f"  max |adapter - merged| {result.merge_max_abs_diff:.3g}")
    lines.append(f"  trainable: LoRA {result.params.lora_trainable:,} vs full {result.params.full_trainable:,}")
    lines.append("  " + "  ".join(f"{k} {v:.3f}" for k, v in result.timings.items()))
    return "\n".join(lines)
