"""`python -m lora_core [flags]`: run one experiment from the command line and write its result as JSON.

Every configuration field is a flag (`shift_scale` -> `--shift-scale`), so the CLI, the app's URL and the
JSON's `config` share one set of names. Bad input exits with status 2 and one line; never a traceback. The flags
themselves are read and checked in args.py, which needs no torch (`python -m lora_core` refuses a bad value
before torch loads).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from ..experiment import run_experiment
from ..settings.config import ConfigError, ExperimentConfig
from ..settings.results import Progress
from .args import EXIT_BAD_INPUT, build_parser, config_from, open_output


def _print_progress(p: Progress) -> None:
    accuracy = "" if p.eval_accuracy is None else f"  accuracy {p.eval_accuracy:.4f}"
    print(f"{p.phase:8s} epoch {p.epoch:>4}/{p.epochs}  train {p.train_loss:.6g}  eval {p.eval_loss:.6g}{accuracy}",
          file=sys.stderr, flush=True)


def _check_adapter_folder(folder: str | None, config: ExperimentConfig) -> None:
    if folder is None:
        return
    if not folder.strip():
        raise ConfigError("--save-adapter needs a folder name")
    if config.method != "lora":
        raise ConfigError("--save-adapter needs --method lora (full fine-tuning has no adapter)")
    if Path(folder).exists() and not Path(folder).is_dir():
        raise ConfigError(f"--save-adapter {folder}: exists and is not a folder")
    # Prove the folder writable before any work (the run may take minutes): make it, write a file, remove it.
    probe = Path(folder) / ".lora-explorer-write-test"
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"--save-adapter {folder}: cannot write there ({error.strerror or error})") from None


def error_line(error: BaseException) -> str:
    """One line for a failure during the run; a GPU out of memory says what to change."""
    text = str(error).splitlines()[0] if str(error) else ""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return (f"error: the GPU ran out of memory ({text}); lower the samples or the layer sizes, or run on the "
                "CPU with --device cpu")
    return f"error: {type(error).__name__}: {text}"


def run_main(argv: list[str]) -> int:
    """`python -m lora_core [flags]`: one run; exit status 0 when it ended ok, 1 when not, 2 for bad input."""
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
