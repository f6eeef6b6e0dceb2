"""Does the time a page shows before Run match what the work then takes on this server? A fresh scheduler (the
app's: lora_core/serving/work.py's kinds of work, its calibration) runs a workshop's sequence of runs and sweeps;
for each job: the raw estimate (settings/budget.py's constants), what the scheduler expected (calibrated by the
jobs before it), what it took, and measured / expected.

    python benchmarks/bench_estimates.py           # linear and digits runs and sweeps, then the text task's
    python benchmarks/bench_estimates.py --quick   # without the text task (about 20 s)

First, as the app's server does when it starts (serving/prewarm.py), the scheduler pretrains each task's base
(here at another seed, so that the sequence's cold bases stay cold): the server has then seen every task once, and
the first job of a kind has its task's ratio to go by. The goal is measured / expected within 0.7-1.3, for the
first job of a kind too. Not a test: the machine's load changes the times (quiet machine only).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LORA_EXPLORER_CACHE", tempfile.mkdtemp(prefix="bench-estimates-"))  # bases cold at first
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core.serving.prewarm import Pretraining
from lora_core.serving.scheduler import Scheduler
from lora_core.serving.work import estimate_work, run_work, work_kind
from lora_core.settings.config import preset
from lora_core.sweep import request
from lora_core.training.loop import warm_up

GUARD_S = 900
PREWARM_SEED = 99  # the bases the server's start pretrains: not the sequence's


def sequence(quick: bool) -> list[tuple[str, object]]:
    lowrank = preset("default", shift="low_rank", shift_rank=4)
    jobs = [
        ("default run, cold base", preset("default")),
        ("default run r=4, base kept", preset("default", rank=4)),
        ("default run seed 1, cold base", preset("default", seed=1)),
        ("Compare's default grid, cold base", request(lowrank, [1, 2, 4, 8], ["lora", "rslora", "full"],
                                                      [1.0, 4.0, 16.0])),
        ("the same grid seed 2, cold base", request(lowrank.replace(seed=2), [1, 2, 4, 8], ["lora", "rslora", "full"],
                                                    [1.0, 4.0, 16.0])),
        ("a smaller grid, base kept", request(lowrank, [1, 8], ["lora"], [1.0, 16.0])),
        ("digits run, cold base", preset("digits")),
        ("digits run r=8, base kept", preset("digits", rank=8)),
        ("digits grid", request(preset("digits"), [1, 2, 4, 8], ["lora", "full"], [1.0])),
        ("digits grid seed 1, cold base", request(preset("digits", seed=1), [1, 2, 4], ["lora", "dora"], [1.0])),
    ]
    if not quick:
        text = preset("text")
        jobs += [("text run, cold base", text), ("text run r=2, base kept", text.replace(rank=2)),
                 ("four placements at 8,192 parameters", request(text, [1], ["lora"],
                                                                 targets=["q,v", "attention", "mlp", "all"],
                                                                 budget=8192)),
                 ("two placements x two ranks", request(text, [2, 8], ["lora"], targets=["q,v", "all"]))]
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="without the text task")
    args = parser.parse_args()
    warm_up()
    sched = Scheduler(run_work, workers=1, memory_budget=2**40, estimate=estimate_work, kind=work_kind)
    seen: set[str] = set()
    firsts: list[float] = []
    later: list[float] = []
    print(f"{'job':44} {'kind':22} {'raw':>8} {'expected':>9} {'took':>8} {'took/expected':>14}")
    tasks = ("default", "digits") if args.quick else ("default", "digits", "text")
    try:
        for name in tasks:  # the server's start: each task's base pretrained once, its ratio learned
            job = sched.submit(Pretraining(preset(name, seed=PREWARM_SEED)), "prewarm")
            assert job.done.wait(GUARD_S) and job.result is not None, job.error
            took = sched.calibration.ratio(job.kind) * job.estimate.seconds  # its first: the ratio is its own
            print(f"{'prewarm: ' + name + ' base':44} {job.kind:22} {job.estimate.seconds:7.2f}s {'':9} "
                  f"{took:7.2f}s  took/raw {took / job.estimate.seconds:.2f}")
        for name, work in sequence(args.quick):
            job = sched.submit(work, "bench")
            assert job.done.wait(GUARD_S) and job.result is not None, job.error
            kind, ratio = job.kind, job.result.estimate["ratio"]
            (later if kind in seen else firsts).append(ratio)
            seen.add(kind)
            print(f"{name:44} {kind:22} {job.estimate.seconds:7.2f}s {job.expected_seconds:8.2f}s "
                  f"{ratio * job.expected_seconds:7.2f}s {ratio:14.2f}")
    finally:
        sched.shutdown()
    for what, ratios in (("the first job of a kind", firsts), ("from the second job of a kind on", later)):
        inside = sum(0.7 <= r <= 1.3 for r in ratios)
        print(f"{what}: {inside} of {len(ratios)} within 0.7-1.3 (took/expected {min(ratios):.2f}-"
              f"{max(ratios):.2f})")


if __name__ == "__main__":
    main()
