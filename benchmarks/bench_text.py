"""The text task on this machine: the default preset's pretraining cold, one default fine-tune from the cached
base, and where to put the adapters, at one parameter budget and over ranks (the README's table).

    python benchmarks/bench_text.py             # the preset's base, its fine-tune, four placements at one budget
    python benchmarks/bench_text.py --table     # also each placement at r = 1, 2, 4, 8 (the README's table)

Printed: seconds against the budget's estimate, and per member its placement, rank, trainable parameters, the
merged model's held-out loss (nats per character) on the code and on the documentation, and its fine-tune time.
Not a test: the machine's load changes the times (run it on a quiet machine, record the figures in the README).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LORA_EXPLORER_CACHE", tempfile.mkdtemp(prefix="bench-text-"))  # cold, then cached
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core.experiment import run_experiment
from lora_core.settings.budget import estimate
from lora_core.settings.config import preset
from lora_core.sweep import request, run_request, sweep_estimate
from lora_core.training.loop import warm_up

PLACEMENTS = ["q,v", "attention", "mlp", "all"]
BUDGET = 8192  # q,v at r = 8 in two blocks of width 64 (the LoRA paper's pair at its favourite rank)


def _timed(what: str, work, estimated: float):
    start = time.perf_counter()
    out = work()
    took = time.perf_counter() - start
    print(f"{what}: {took:.2f} s (estimated {estimated:.1f} s, estimate / measured {estimated / took:.2f})")
    return out


def _members(result) -> None:
    for run in result.members:
        c, losses = run.config, run.losses
        print(f"  {c['targets']:>10} r={c['rank']:<3} {run.params.lora_trainable:>7,} params  code "
              f"{losses['merged_on_shifted']:.3f} (base {losses['base_on_shifted']:.3f})  documentation "
              f"{losses['merged_on_original']:.3f} (base {losses['base_on_original']:.3f})  "
              f"{losses['merged_on_shifted'] / math.log(2):.3f} bits/char on code  {run.timings['finetune_s']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="also each placement at r = 1, 2, 4, 8")
    args = parser.parse_args()
    warm_up()
    config = preset("text")
    result = _timed("text preset, pretraining cold and its fine-tune", lambda: run_experiment(config),
                    estimate(config).seconds)
    print(f"  pretraining {result.timings['pretrain_s']:.2f} s, fine-tune {result.timings['finetune_s']:.2f} s, "
          f"base {result.losses['base_on_original']:.3f} nats/char on held-out documentation")
    _timed("the same run again (base cached)", lambda: run_experiment(config.replace(seed=config.seed)),
           estimate(config).seconds)
    req = request(config, [1], ["lora"], targets=PLACEMENTS, budget=BUDGET)
    _members(_timed(f"four placements at {BUDGET:,} parameters", lambda: run_request(req),
                    sweep_estimate(req).seconds))
    if args.table:
        req = request(config, [1, 2, 4, 8], ["lora"], targets=PLACEMENTS)
        _members(_timed("each placement at r = 1, 2, 4, 8", lambda: run_request(req), sweep_estimate(req).seconds))


if __name__ == "__main__":
    main()
