"""`python -m lora_core`: run one experiment from the command line and write its result as JSON.

Every configuration field is a flag (`shift_scale` -> `--shift-scale`), so the CLI, the app's URL and the
JSON's `config` share one set of names. Bad input exits with status 2 and one line; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
from pathlib import Path
from typing import NoReturn, TextIO

import torch

from .config import FIELDS, PRESETS, ConfigError, ExperimentConfig, bounds_text, cli_name, coerce, preset
from .experiment import run_experiment
from .results import Progress

EXIT_BAD_INPUT = 2


def flag(name: str) -> str:
    """The CLI flag of a config field: 'shift_scale' -> '--shift-scale'."""
    return "--" + cli_name(name)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with --preset and one flag per configuration field."""
    parser = _Parser(prog=prog, description=description)
    parser.add_argument("--preset", default="default", choices=list(PRESETS),
                        help="starting configuration; flags below override it")
    for name, field in FIELDS.items():
        # A yes/no setting works as a bare flag (`--use-dora`) or with a value (`--use-dora false`).
        switch = {"nargs": "?", "const": "true"} if field.type == "bool" else {}
        parser.add_argument(flag(name), dest=name, default=None, metavar=name.upper(), **switch,
                            help=f"{field.metadata['help']} ({bounds_text(name)})")
    return parser


def config_from(args: argparse.Namespace) -> ExperimentConfig:
    """The preset with every given flag applied; ConfigError names a bad one."""
    overrides = {name: coerce(name, getattr(args, name)) for name in FIELDS if getattr(args, name) is not None}
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


def _print_progress(p: Progress) -> None:
    accuracy = "" if p.eval_accuracy is None else f"  accuracy {p.eval_accuracy:.4f}"
    print(f"{p.phase:8s} epoch {p.epoch:>4}/{p.epochs}  train {p.train_loss:.6g}  eval {p.eval_loss:.6g}{accuracy}",
          file=sys.stderr, flush=True)


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


def _check_adapter_folder(folder: str | None, config: ExperimentConfig) -> None:
    if folder is None:
        return
    if not folder.strip():
        raise ConfigError("--save-adapter needs a folder name")
    if config.method != "lora":
        raise ConfigError("--save-adapter needs --method lora (full fine-tuning has no adapter)")
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ConfigError(f"--save-adapter {folder}: exists and is not a folder")


def csv_text(fields: list[str], rows: list[dict]) -> str:
    """Rows of a table as CSV text with a header (the sweep's members, the inspector's modules)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fields)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def error_line(error: BaseException) -> str:
    """One line for a failure during the run; a GPU out of memory says what to change."""
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return (f"error: the GPU ran out of memory ({text}); lower the samples or the layer sizes, or run on the "
                "CPU with --device cpu")
    return f"error: {type(error).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sweep"]:
        from .sweep_cli import sweep_main

        return sweep_main(argv[1:])
    if argv[:1] == ["inspect"]:
        from .inspector_cli import inspect_main

        return inspect_main(argv[1:])
    args = build_parser().parse_args(argv)
    out = None
    try:
        config = config_from(args)
        _check_adapter_folder(args.save_adapter, config)
        out = open_output(args.json)
        result = run_experiment(config, on_progress=_print_progress, save_adapter_to=args.save_adapter)
        text = result.to_json(indent=2)
        if out is not None:
            out.write(text + "\n")
            out.close()
        elif args.json == "-":
            print(text)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, OSError, MemoryError) as error:  # e.g. out of memory, a disk that filled up meanwhile
        print(error_line(error), file=sys.stderr)
        return 1
    finally:
        if out is not None and not out.closed:
            with contextlib.suppress(OSError):
                out.close()
    print(summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    return 0 if result.status == "ok" else 1


def summary(result) -> str:
    """A few human-readable lines about a finished run."""
    lines = [f"status {result.status} on {result.device} ({result.path} path)"]
    if result.message:
        lines.append(result.message)
    lines += [f"  {key:20s} {value:.6g}" + (f"  accuracy {result.accuracies[key]:.4f}"
                                            if result.accuracies.get(key) is not None else "")
              for key, value in result.losses.items() if value is not None]
    if result.merge_max_abs_diff is not None:
        lines.append(f"  max |adapter - merged| {result.merge_max_abs_diff:.3g}")
    lines.append(f"  trainable: LoRA {result.params.lora_trainable:,} vs full {result.params.full_trainable:,}")
    lines.append("  " + "  ".join(f"{k} {v:.3f}" for k, v in result.timings.items()))
    return "\n".join(lines)
