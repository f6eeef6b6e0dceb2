"""Sweeps against single runs, in one process, with the pretrained base cached (the issue's two measurements).

    python benchmarks/bench_sweep.py                 # the default preset's 48 members (seconds)
    python benchmarks/bench_sweep.py --article       # also the article's shapes (first run pretrains ~2.5 min)
    python benchmarks/bench_sweep.py --wide          # also issue 24's 256-wide grid against one member

A. Default preset (64 → 64 → 64, 30 epochs), 6 adapter methods (LoRA, rsLoRA, DoRA, PiSSA, OLoRA, LoRA+) × ranks
   1, 2, 4, 8, 16, 32, 48, 64 = 48 members, end to end (fine-tuning and every analysis), base cached.
B. The article's shapes (1001 → 1000 → 1000, 100 epochs), ranks 1, 2, 4, 8, 16 × α/r and α/√r = 10 members,
   against one member's run (r = 1, α/r) end to end, base cached.
C. 256 wide (256 → 256 → 256, 4,000 samples, 20 pretraining and 100 fine-tuning epochs), ranks 1, 2, 4, 8, 16 ×
   α 1, 4 = 10 members, against one r = 16, α 4 member end to end, base cached.
D. Compare's default grid (LoRA, rsLoRA, full × r 1, 2, 4, 8 × α 1, 4, 16 = 25 members on the rank-4 shift): cold
   (its base pretrained first) and with its base kept, against the estimate the page shows before Run (raw).
E. Small grids and single runs must not get slower: each small grid against its members run one by one
   (run_experiment, the reference), and one member as a sweep against its single run, in this process.
Printed: wall times, the ratio, and how the time splits between paths. Repeats take the best of --repeats.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core import cache
from lora_core.experiment import base_cached, run_experiment
from lora_core.measure import svd_memo
from lora_core.settings.config import preset
from lora_core.sweep import members, request, run_request, run_sweep, sweep_estimate
from lora_core.training.loop import warm_up


def best_of(repeats: int, work) -> tuple[float, object]:
    """The best wall time of `repeats` runs of `work`, each with no singular values remembered from before (a
    repeat would find all of its own: the reference would no longer be a first run)."""
    times, out = [], None
    for _ in range(repeats):
        svd_memo.forget()
        start = time.perf_counter()
        out = work()
        times.append(time.perf_counter() - start)
    return min(times), out


def split(result) -> str:
    by_path: dict[str, float] = {}
    for run in result.members:
        by_path[run.path] = by_path.get(run.path, 0.0) + run.timings["finetune_s"]
    analysis = sum(run.timings["analysis_s"] for run in result.members)
    return ", ".join(f"{path} fine-tunes {t:.2f} s" for path, t in by_path.items()) + f", analyses {analysis:.2f} s"


def compare_grid(repeats: int) -> None:
    """D: Compare's default grid cold, then with its base kept, against the sweep's raw estimate."""
    config = preset("default", device="cpu", shift="low_rank", shift_rank=4, seed=7)  # a base nothing made yet
    req = request(config, (1, 2, 4, 8), ("lora", "rslora", "full"), (1.0, 4.0, 16.0))
    cold_estimate = sweep_estimate(req, cached=base_cached).seconds
    cold, _ = best_of(1, lambda: run_request(req))
    kept_estimate = sweep_estimate(req, cached=base_cached).seconds
    kept, result = best_of(repeats, lambda: run_request(req))
    print(f"D. Compare's default grid, {len(result.members)} members: cold {cold:.2f} s (raw estimate "
          f"{cold_estimate:.2f} s, took {cold / cold_estimate:.2f} of it); base kept {kept:.2f} s (raw estimate "
          f"{kept_estimate:.2f} s, took {kept / kept_estimate:.2f} of it; {split(result)})")


def small_grids(repeats: int) -> None:
    """E: small grids against their members one by one, and a one-member sweep against its single run."""
    config = preset("default", device="cpu", shift="low_rank", shift_rank=4)
    run_experiment(config)  # the base, cached
    grids = {"LoRA r 1, 8 × α 1, 16": ((1, 8), ("lora",), (1.0, 16.0)),
             "LoRA r 1, 2, 4, 8": ((1, 2, 4, 8), ("lora",), (1.0,)),
             "LoRA, DoRA r 4": ((4,), ("lora", "dora"), (1.0,)),
             "one member, LoRA r 4": ((4,), ("lora",), (1.0,))}
    for name, (ranks, methods, alphas) in grids.items():
        req = request(config, ranks, methods, alphas)
        swept, result = best_of(repeats, lambda req=req: run_request(req))
        configs = [c for _, c in members(req)]
        alone, _ = best_of(repeats, lambda configs=configs: [run_experiment(c) for c in configs])
        print(f"E. {name}: {len(configs)} member(s) as a sweep {swept:.3f} s, one by one {alone:.3f} s: "
              f"{swept / alone:.2f}x ({', '.join(sorted({run.path for run in result.members}))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--article", action="store_true", help="also run B at the article's shapes")
    parser.add_argument("--wide", action="store_true", help="also run C at 256 wide")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache", help="folder for the pretrained bases (default: a temporary one)")
    args = parser.parse_args()
    os.environ[cache.CACHE_ENV] = args.cache or tempfile.mkdtemp(prefix="lora-sweep-")
    warm_up()

    compare_grid(args.repeats)
    small_grids(args.repeats)

    config = preset("default", device="cpu")
    run_experiment(config)  # the base, cached
    methods = ("lora", "rslora", "dora", "pissa", "olora", "loraplus")
    seconds, result = best_of(args.repeats, lambda: run_sweep(config, ranks=(1, 2, 4, 8, 16, 32, 48, 64),
                                                              methods=methods))
    print(f"A. default preset, {len(result.members)} members: {seconds:.2f} s end to end ({split(result)})")

    if args.article:
        config = preset("article", device="cpu")
        start = time.perf_counter()
        run_experiment(config)
        print(f"B. article base ready in {time.perf_counter() - start:.1f} s")
        one, single = best_of(args.repeats, lambda: run_experiment(config))
        grid, result = best_of(1, lambda: run_sweep(config, ranks=(1, 2, 4, 8, 16), methods=("lora", "rslora")))
        print(f"B. article shapes, one member (r = 1): {one:.2f} s end to end (fine-tune "
              f"{single.timings['finetune_s']:.2f} s, analysis {single.timings['analysis_s']:.2f} s)")
        print(f"B. article shapes, {len(result.members)} members: {grid:.2f} s end to end ({split(result)}); "
              f"{grid / one:.1f}x one member")

    if args.wide:
        config = preset("default", device="cpu", d_in=256, hidden=256, d_out=256, n_samples=4000,
                        pretrain_epochs=20, epochs=100)
        member = config.replace(rank=16, alpha=4.0)
        run_experiment(member)  # the base, cached
        one, single = best_of(args.repeats, lambda: run_experiment(member))
        grid, result = best_of(args.repeats, lambda: run_sweep(config, ranks=(1, 2, 4, 8, 16), methods=("lora",),
                                                               alphas=(1.0, 4.0)))
        print(f"C. 256 wide, one member (r = 16): {one:.2f} s end to end (fine-tune "
              f"{single.timings['finetune_s']:.2f} s); {len(result.members)} members: {grid:.2f} s ({split(result)}); "
              f"{grid / one:.2f}x one member")


if __name__ == "__main__":
    main()
