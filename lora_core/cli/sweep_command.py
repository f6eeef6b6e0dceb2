"""`python -m lora_core sweep`: a grid of ranks × methods × α × seeds from one pretrained base per seed.

    python -m lora_core sweep --ranks 1,2,4,8 --methods lora,full --alphas 1,2 --seeds 0,1 --json - --csv out.csv

Every configuration flag of the single run works here too and sets what the grid does not vary. Bad input exits
with status 2 and one line, before any work; progress goes to stderr, one line per finished member.
"""

from __future__ import annotations

import contextlib
import sys

from ..settings.config import ConfigError
from ..sweep import SweepProgress, member_name, members, request, run_request
from ..sweep_table import row_fields, rows
from .args import EXIT_BAD_INPUT, config_from, csv_text, open_output, sweep_grid, sweep_parser
from .run_command import error_line


def sweep_main(argv: list[str]) -> int:
    args = sweep_parser().parse_args(argv)
    outputs = []
    try:
        config = config_from(args)
        req = request(config, *sweep_grid(args))
        json_out, csv_out = open_output(args.json), open_output(args.csv, "--csv")
        outputs = [o for o in (json_out, csv_out) if o is not None]
        total = len(members(req))
        print(f"sweep of {total} members", file=sys.stderr, flush=True)

        def progress(p: SweepProgress) -> None:
            if p.progress.phase == "finetune" and p.progress.epoch == p.progress.epochs:
                print(f"member {p.member + 1}/{p.members} fine-tuned", file=sys.stderr, flush=True)

        result = run_request(req, on_progress=progress)
        for out, text, flag in ((json_out, result.to_json(indent=2) + "\n", args.json),
                                (csv_out, csv_text(row_fields(result), rows(result)), args.csv)):
            if out is not None:
                out.write(text)
                out.close()
            elif flag == "-":
                sys.stdout.write(text)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RuntimeError, OSError, MemoryError) as error:
        print(error_line(error), file=sys.stderr)
        return 1
    finally:
        for out in outputs:
            if not out.closed:
                with contextlib.suppress(OSError):
                    out.close()
    finished = [(m, r) for m, r in zip(result.methods, result.members, strict=True)
                if r.status == "ok" and r.losses.get("merged_on_shifted") is not None]
    lowest = "no member finished"
    if finished:
        method, run = min(finished, key=lambda m: m[1].losses["merged_on_shifted"])
        lowest = f"lowest merged loss {run.losses['merged_on_shifted']:.4g} ({member_name(method, run.config)})"
    print(f"{len(result.members)} members in {result.timings['total_s']:.2f} s; {lowest}", file=sys.stderr)
    return 0 if result.status == "ok" else 1
