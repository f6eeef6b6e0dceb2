"""Each lesson's runs, cold (its base pretrained first) and cached (the base from the cache), on this machine.

    python benchmarks/bench_lessons.py             # best of 3 each

Printed: a Markdown table (the README's): the lesson, its fine-tunes, cold and cached seconds, and the answer its
runs support. Torch is warmed up first (as a server's first page does); the disk cache is off.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ["LORA_EXPLORER_CACHE"] = "off"  # memory only: clear_memory() makes the next run cold
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core import cache
from lora_core.lessons import LESSONS
from lora_core.sweep import members, run_request
from lora_core.training.loop import warm_up


def _best(repeats: int, run, before=lambda: None) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warm_up()
    print("| lesson | fine-tunes | cold (s) | cached base (s) | the runs say |\n|---|---|---|---|---|")
    for lesson in LESSONS.values():
        req = lesson.runs()
        cold, _ = _best(args.repeats, lambda req=req: run_request(req), cache.clear_memory)
        cached, result = _best(args.repeats, lambda req=req: run_request(req))
        print(f"| {lesson.title} | {len(members(req))} | {cold:.2f} | {cached:.2f} | {lesson.reveal(result).answer} |")


if __name__ == "__main__":
    main()
