"""`python -m lora_core inspect DIR|FILE`: the ranks and spectra of any PEFT LoRA adapter, without its base model.

    python -m lora_core inspect adapter/ --json - --csv modules.csv

DIR holds adapter_model.safetensors (and adapter_config.json); FILE is a .safetensors file (its folder's config
is read if there is one) or a .zip of both. Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..inspector import CSV_FIELDS, MAX_BYTES, AdapterError, AdapterReport, from_path, rows
from ..settings.config import ConfigError
from .args import EXIT_BAD_INPUT, Parser, csv_text, open_output


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m lora_core inspect", description="Ranks, scalings and the singular values of "
                     "ΔW = s·B·A for every module of a PEFT LoRA adapter (safetensors only).")
    parser.add_argument("source", help="a folder with adapter_model.safetensors, a .safetensors file or a .zip")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH ('-' for stdout)")
    parser.add_argument("--csv", metavar="PATH", help="write one row per module as CSV to PATH ('-' for stdout)")
    parser.add_argument("--max-mib", type=float, default=MAX_BYTES / 2**20, help="the largest file read, in MiB "
                        f"(default {MAX_BYTES / 2**20:,.0f})")
    return parser


def summary(report: AdapterReport) -> str:
    lines = [f"{len(report.modules)} modules, {sum(m.params for m in report.modules):,} adapter parameters"]
    lines += [f"  {m.module}: r={m.rank} s={m.scaling:.3g} ‖ΔW‖={m.delta_norm:.3g} effective rank "
              f"{m.effective_rank:.2f}, 90% of the energy in {m.rank_for['90%']}" for m in report.modules[:20]]
    if len(report.modules) > 20:
        lines.append(f"  … and {len(report.modules) - 20} more (see --json or --csv)")
    return "\n".join(lines + [f"note: {a}" for a in report.assumed])


def inspect_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        max_bytes = int(args.max_mib * 2**20)
        report = from_path(args.source, max_bytes)
        outputs = [(args.json, "--json", json.dumps(report.to_dict(), indent=2) + "\n"),
                   (args.csv, "--csv", csv_text(CSV_FIELDS, rows(report)))]
        for path, flag, text in outputs:
            if path == "-":
                sys.stdout.write(text)
            elif path is not None:
                out = open_output(path, flag)
                out.write(text)
                out.close()
    except (AdapterError, ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary(report), file=sys.stderr if "-" in (args.json, args.csv) else sys.stdout)
    return 0
