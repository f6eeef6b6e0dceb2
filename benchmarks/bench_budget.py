"""How long runs really take against the time the budget estimates (budget.estimate(...).seconds), which the
app's time limit admits by and the scheduler tells waiting pages: the estimate should be an upper bound on a
quiet machine and within 1.5x of the truth, so that a shown wait is honest.

    python benchmarks/bench_budget.py            # every case below, cold (cache off), torch warmed up
    python benchmarks/bench_budget.py --quick    # the small cases only

Printed: one line per case with measured seconds, estimated seconds and estimated / measured. Not a test: the
machine's load changes the measurements (run it on a quiet machine and record the figures in the README).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LORA_EXPLORER_CACHE", "off")  # every case pretrains: what a first run costs
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core import cache
from lora_core.experiment import run_experiment
from lora_core.settings.budget import estimate
from lora_core.settings.config import preset
from lora_core.training.loop import warm_up

ONE_ROW = dict(d_in=1, hidden=1, d_out=1, rank=1, n_eval=1, batch_size=1, pretrain_epochs=1, epochs=1)
CASES = {  # name: (preset, overrides, quick)
    "default preset": ("default", {}, True),
    "digits preset": ("digits", {}, True),
    "batch 1, 1-wide, 20,000 samples": ("default", dict(ONE_ROW, n_samples=20_000), True),
    "batch 1, 64-wide, 5,000 samples": ("default", dict(n_samples=5_000, batch_size=1, pretrain_epochs=1, epochs=1),
                                        True),
    "batch 1, autograd fine-tune": ("default", dict(ONE_ROW, n_samples=20_000, path="autograd"), True),
    "digits, batch 1": ("digits", dict(batch_size=1, pretrain_epochs=1, epochs=1), True),
    "batch 1, 1-wide, 300,000 samples": ("default", dict(ONE_ROW, n_samples=300_000), False),
    "1500 wide, 2,000 samples": ("default", dict(d_in=1500, hidden=1500, d_out=1500, n_samples=2000), False),
    "article, 5 + 5 epochs": ("article", dict(pretrain_epochs=5, epochs=5), False),
    "article, full fine-tuning 5 + 5": ("article", dict(pretrain_epochs=5, epochs=5, method="full"), False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the small cases")
    args = parser.parse_args()
    warm_up()
    print(f"{'case':36s} {'measured':>9s} {'estimate':>9s} {'est/meas':>9s}")
    for name, (base, overrides, quick) in CASES.items():
        if args.quick and not quick:
            continue
        config = preset(base, **overrides)
        cache.clear_memory()
        start = time.perf_counter()
        result = run_experiment(config)
        seconds = time.perf_counter() - start
        guess = estimate(config).seconds
        print(f"{name:36s} {seconds:8.2f}s {guess:8.2f}s {guess / seconds:9.2f}  ({result.status})", flush=True)


if __name__ == "__main__":
    main()
