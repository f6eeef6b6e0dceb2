"""What recording the dynamics costs, and what they show (README: "See it learn").

    python benchmarks/bench_dynamics.py            # both parts
    python benchmarks/bench_dynamics.py --cost     # only the recording's cost at the article's shapes

1. Cost: the article's shapes (1001 → 1000 → 1000, 10,000 samples, batch 128), 5 fine-tuning epochs from a base
   pretrained for 1 epoch, each path with and without the recorder, side by side in this process (best of 3):
   the ratio is what recording adds.
2. What they show: on the `dynamics` preset (a graded rank-3 shift, σ in ratio 4 : 2 : 1), the fine-tuning epoch
   at which each of the shift's directions was half learned, for both optimizers, two initialisations and two
   seeds.
"""

from __future__ import annotations

import argparse
import copy
import time

from lora_core.adapters.attach import adapted
from lora_core.experiment import pretrain, run_experiment
from lora_core.measure.dynamics import Dynamics, half_learned_epochs
from lora_core.settings.config import preset
from lora_core.tasks.registry import kind
from lora_core.training.loop import warm_up
from lora_core.training.trainers import TRAINERS, choose_path


def cost() -> None:
    config = preset("article", pretrain_epochs=1, epochs=5, device="cpu")
    original, shifted = kind(config).make_tasks(config, "cpu")
    _, _, base = pretrain(config, original, "cpu")
    for method in ("lora", "full"):
        c = config.replace(method=method)
        path = choose_path(c)
        best = {}
        for recording in (False, True, False, True, False, True):
            model = adapted(base, c) if method == "lora" else copy.deepcopy(base).requires_grad_(True)
            record = Dynamics(c, base, shifted).record if recording else None
            start = time.perf_counter()
            TRAINERS[path](model, shifted.train, shifted.eval, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                           seed=c.seed, phase="finetune", optimizer=c.optimizer, record=record)
            seconds = time.perf_counter() - start
            best[recording] = min(best.get(recording, seconds), seconds)
        print(f"{method} ({path} path), {c.epochs} epochs: {best[False]:.2f} s without recording, "
              f"{best[True]:.2f} s with: {best[True] / best[False]:.3f}x", flush=True)


def show() -> None:
    print("| optimizer | init | seed | half learned at epoch (direction 1, 2, 3) | merged loss |")
    print("|---|---|---|---|---|")
    for optimizer in ("sgd", "adam"):
        for init in ("kaiming", "gaussian"):
            for seed in (0, 1):
                result = run_experiment(preset("dynamics", optimizer=optimizer, init=init, seed=seed, device="cpu"))
                epochs = half_learned_epochs(result.history["finetune"])
                shown = ", ".join("—" if e is None else str(e) for e in epochs)
                print(f"| {optimizer} | {init} | {seed} | {shown} | {result.losses['merged_on_shifted']:.3g} |",
                      flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", action="store_true", help="only the recording's cost")
    args = parser.parse_args()
    warm_up()
    cost()
    if not args.cost:
        show()
