"""The digits task's numbers (issue 11): accuracies per shift kind, LoRA by rank against full fine-tuning, and the
default digits run's wall time, end to end with pretraining (cache off).

    python benchmarks/bench_digits.py              # every shift at the default preset, ranks 1-8, full
    python benchmarks/bench_digits.py --quick      # the default preset only

Printed: a Markdown table (the README's) and the default run's wall time (best of --repeats, cold: pretraining
included).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LORA_EXPLORER_CACHE", "off")  # the first run of each setting pretrains, as a cold run
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core import cache
from lora_core.experiment import run_experiment
from lora_core.settings.config import DIGIT_SHIFT_LABELS, DIGIT_SHIFTS, preset
from lora_core.training.loop import warm_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the default preset's run and its time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warm_up()
    times = []
    for _ in range(args.repeats):
        cache.clear_memory()
        start = time.perf_counter()
        result = run_experiment(preset("digits"))
        times.append(time.perf_counter() - start)
    a = result.accuracies
    print(f"default digits run (90° rotation, LoRA r = 2 on all three layers), cold: best {min(times):.2f} s of "
          f"{args.repeats}; accuracy: base original {a['base_on_original']:.3f}, base rotated "
          f"{a['base_on_shifted']:.3f}, merged rotated {a['merged_on_shifted']:.3f}, merged original "
          f"{a['merged_on_original']:.3f}")
    if args.quick:
        return
    ranks = (1, 2, 4, 8)
    print("\n| shift | base, original | base, shifted | " + " | ".join(f"LoRA r = {r}" for r in ranks)
          + " | full | LoRA r = 2, original after |")
    print("|---|---|---|" + "---|" * len(ranks) + "---|---|")
    for shift in DIGIT_SHIFTS:
        runs = {r: run_experiment(preset("digits", digits_shift=shift, rank=r, alpha=float(r))) for r in ranks}
        full = run_experiment(preset("digits", digits_shift=shift, method="full"))
        first = runs[ranks[0]].accuracies
        cells = [f"{runs[r].accuracies['merged_on_shifted']:.3f}" for r in ranks]
        print(f"| {DIGIT_SHIFT_LABELS[shift]} | {first['base_on_original']:.3f} | {first['base_on_shifted']:.3f} | "
              + " | ".join(cells) + f" | {full.accuracies['merged_on_shifted']:.3f} | "
              f"{runs[2].accuracies['merged_on_original']:.3f} |")
    print("\nα = r for each rank (s = 1); held-out accuracy of the merged model on the shifted digits.")


if __name__ == "__main__":
    main()
