"""Peak memory of runs, each measured as a server's first run of its shape.

One helper process imports torch and pays its lazy initialisation once, then forks one child per run: a child
starts with a clean heap of its own, as a fresh process would, without paying the 5-7 s of imports and warm-up
that twelve fresh processes cost one after another. A child maps the file pages it touches (torch's libraries)
into its own page table afresh, so it counts a few MiB of code pages that a fresh process had mapped at import:
over the budget test's shapes its peak was within 13 MiB of a fresh process's, 4 MiB above it for the digits.
(One process running every shape in turn would not do: a later run reuses the earlier runs' freed memory
without growing, and seems smaller than it is.)

Peak RSS comes from /proc (VmHWM), reset to the current RSS just before the run; getrusage's ru_maxrss is no use
here, since a child inherits its parent's peak across fork.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# argv[1]: {name: [kind, settings]}; prints one JSON line {name: [bytes, seconds]} per run.
HELPER = r"""
import json, os, sys, time
os.environ["LORA_EXPLORER_CACHE"] = "off"
from lora_core.settings.config import preset
from lora_core.experiment import run_experiment
from lora_core.measure.dynamics import Dynamics
from lora_core.sweep import run_sweep
from lora_core.training.loop import warm_up

def kib(field):
    return int(open("/proc/self/status").read().split(field + ":")[1].split()[0]) * 1024

def threads():
    return len(os.listdir("/proc/self/task"))

def experiment(config):
    run_experiment(config)

def sweep(config):
    run_sweep(config, ranks=(100, 150, 200), methods=("lora", "rslora", "pissa", "olora"))

def unrecorded_sweep(config):  # the same sweep with its batches' dynamics recording nothing
    Dynamics.record_batch = lambda self, changes: [None] * len(changes)
    sweep(config)

def base_of(config):  # the sweep's base, in memory
    run_experiment(config.replace(rank=1))

RUNS = {"experiment": (lambda config: None, experiment), "sweep": (base_of, sweep),
        "unrecorded sweep": (base_of, unrecorded_sweep)}

start_threads = threads()
warm_up()  # too small for torch's thread pool, which must not exist before a fork (it would hang the child)
assert threads() == start_threads, "torch started its thread pool before the fork"
for name, (kind, settings) in json.loads(sys.argv[1]).items():
    before_run, run = RUNS[kind]
    child = os.fork()
    if child == 0:
        try:
            config = preset("default", **settings)
            before_run(config)
            warm_up()  # maps again the pages the parent's warm-up used: a fresh process has them mapped
            open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the current RSS
            rss, start = kib("VmRSS"), time.perf_counter()
            run(config)
            print(json.dumps({name: [kib("VmHWM") - rss, round(time.perf_counter() - start, 1)]}), flush=True)
            os._exit(0)
        except BaseException as error:
            print(f"{name}: {error!r}", file=sys.stderr, flush=True)
            os._exit(1)
    _, status = os.waitpid(child, 0)
    if status != 0:
        sys.exit(f"{name}: the child ended with status {status}")
"""


def peak_bytes(runs: dict[str, tuple[str, dict]], timeout: float = 900) -> dict[str, tuple[int, float]]:
    """{name: (kind, settings)} -> {name: (peak bytes above the RSS before the run, seconds)}; kind is
    "experiment" (run_experiment), "sweep" (a sweep of ranks 100-200 over four methods, its base in memory) or
    "unrecorded sweep" (the same, its batches' dynamics recording nothing)."""
    out = subprocess.run([sys.executable, "-c", HELPER, json.dumps(runs)], capture_output=True, text=True,
                         cwd=ROOT, timeout=timeout)  # a hang guard
    assert out.returncode == 0, out.stderr[-2000:]
    measured = {}
    for line in out.stdout.splitlines():
        measured.update(json.loads(line))
    assert set(measured) == set(runs), out.stdout
    return {name: (int(peak), float(seconds)) for name, (peak, seconds) in measured.items()}
