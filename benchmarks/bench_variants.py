"""Every method on one pretrained base: LoRA, rsLoRA, DoRA, PiSSA, OLoRA, LoRA+ and full fine-tuning.

    python benchmarks/bench_variants.py                      # the default preset, seconds
    python benchmarks/bench_variants.py --preset article     # the article's preset (first run pretrains ~2.5 min)

Each method is one `run_experiment` of the preset with one setting changed (same seed, so the same data, base
and batches); the base is pretrained once and then comes from the cache for every method. Printed per method:
the path that ran, the final merged loss on held-out shifted data, the fine-tuning wall time and the whole
run's, and ΔW's non-zero singular values per layer. The README's variants table is this output.
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
from lora_core.experiment import run_experiment
from lora_core.measure.analysis import direction_count
from lora_core.settings.config import PRESETS, preset

METHODS = {  # label -> the settings that differ from the preset
    "LoRA": {},
    "rsLoRA": {"use_rslora": True},
    "DoRA": {"use_dora": True},
    "PiSSA": {"init": "pissa"},
    "OLoRA": {"init": "olora"},
    "LoRA+ (λ = 16)": {"lr_ratio": 16.0},
    "full fine-tuning": {"method": "full"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", choices=list(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", help="folder for the pretrained base (default: a temporary one)")
    args = parser.parse_args()
    folder = args.cache or tempfile.mkdtemp(prefix="lora-variants-")
    os.environ[cache.CACHE_ENV] = folder
    base = preset(args.preset, device=args.device)
    start = time.perf_counter()
    run_experiment(base)  # pretrains the base once (or finds it); its time is not any method's
    print(f"{args.preset} preset: r = {base.rank}, α = {base.alpha:g}, {base.d_in} → {base.hidden} → "
          f"{base.d_out}, {base.epochs} fine-tuning epochs; base ready in {time.perf_counter() - start:.1f} s")
    print("| method | path | merged loss, shifted | fine-tune | whole run | ΔW directions (layer1, layer2) |")
    print("|---|---|---|---|---|---|")
    for label, changes in METHODS.items():
        config = base.replace(**changes)
        start = time.perf_counter()
        result = run_experiment(config)
        total = time.perf_counter() - start
        directions = ", ".join(str(direction_count(s.delta_merged)) for s in result.spectra.values())
        print(f"| {label} | {result.path} | {result.losses['merged_on_shifted']:.4g} | "
              f"{result.timings['finetune_s']:.2f} s | {total:.2f} s | {directions} |", flush=True)


if __name__ == "__main__":
    main()
