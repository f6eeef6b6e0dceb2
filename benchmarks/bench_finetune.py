"""The article's LoRA fine-tune four ways, in one process, on the article's shapes; plus spectra and end to end.

    python benchmarks/bench_finetune.py                 # about a minute on an idle 2-core CPU
    python benchmarks/bench_finetune.py --epochs 2 --device cuda

Shapes: n = 10000 samples, 1001 -> 1000 -> 1000, r = 1, α = 1, batch 128, Adam lr 1e-3, A ~ N(0, 1), B = 0.
Four methods fine-tune the same base on the same shifted task from the same A and B with the same batches:

  article   the article's adapter as it describes it: A [d_in, r], B [r, d_out], forward x @ (A @ B) * s added to
            the frozen linear, so every step builds the d_in x d_out product; autograd and torch.optim.Adam
  peft      Hugging Face PEFT's LoRA (get_peft_model, target_modules layer1 and layer2), A and B copied in
  autograd  lora_core's general path: LoRALinear, autograd, torch.optim.Adam (path='autograd')
  fast      lora_core's fast path (fast.py: precomputed activations, gradients by hand, Adam in place)

The three autograd methods share lora_core's training loop (training.train), so they differ only in the model.
Times are whole fine-tunes divided by their optimizer steps: they include the held-out loss after every epoch,
and for the fast path its precomputation. The base is pretrained briefly (--pretrain-epochs, default 1, by
lora_core's autograd pretraining), so it is far from converged; a fine-tune costs the same from any base.
Each method runs --repeats times, interleaved; the best time counts, the first run's losses are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_core import cache
from lora_core.adapters.attach import add_lora
from lora_core.experiment import finetune, pretrain, run_experiment
from lora_core.measure import analysis
from lora_core.settings.config import preset
from lora_core.settings.results import PhaseHistory
from lora_core.tasks.data import rng
from lora_core.tasks.linear import make_tasks
from lora_core.tasks.linear_model import TARGETS
from lora_core.training import fast
from lora_core.training.devices import pick_device
from lora_core.training.loop import train

# ---------------------------------------------------------------------------------------------------------
# The article's adapter, written from its description (A: [d_in, r] randn, B: [r, d_out] zeros).


class AdaptedLinear(nn.Module):
    def __init__(self, linear: nn.Linear, r: int, scaling: float) -> None:
        super().__init__()
        linear.requires_grad_(False)
        self.linear = linear
        w = linear.weight
        self.A = nn.Parameter(torch.randn(linear.in_features, r, dtype=w.dtype, device=w.device))
        self.B = nn.Parameter(torch.zeros(r, linear.out_features, dtype=w.dtype, device=w.device))
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + torch.matmul(x, torch.matmul(self.A, self.B) * self.scaling)


class LoRAAdapter(nn.Module):
    def __init__(self, model: nn.Module, r: int = 16, alpha: float = 1) -> None:
        super().__init__()
        self.module_list = nn.ModuleList()
        self.scaling = alpha / r
        for layer in model.children():
            self.module_list.append(AdaptedLinear(layer, r, self.scaling) if isinstance(layer, nn.Linear) else layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.module_list:
            x = layer(x)
        return x


# ---------------------------------------------------------------------------------------------------------
# The four methods: each takes (config, base, task, reference LoRA model) and returns (status, history).


def run_article(config, base, task, ref):
    model = LoRAAdapter(copy.deepcopy(base), r=config.rank, alpha=config.alpha)
    with torch.no_grad():
        for adapted, name in zip(model.module_list, TARGETS, strict=True):
            adapted.A.copy_(ref.get_submodule(name).lora_A.T)
    return train(model, task.train, task.eval, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                 seed=config.seed, phase="finetune")


def run_peft(config, base, task, ref):
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=config.rank, lora_alpha=config.alpha,
                                                           target_modules=list(TARGETS)))
    with torch.no_grad():
        for name in TARGETS:
            layer = model.base_model.model.get_submodule(name)
            layer.lora_A["default"].weight.copy_(ref.get_submodule(name).lora_A)
            layer.lora_B["default"].weight.zero_()
    return train(model, task.train, task.eval, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                 seed=config.seed, phase="finetune")


def run_lora_core(path):
    def run(config, base, task, ref):
        status, history, _, ran = finetune(config.replace(path=path), base, task)
        assert ran == path
        return status, history
    return run


METHODS = {"article": run_article, "peft": run_peft, "autograd": run_lora_core("autograd"),
           "fast": run_lora_core("fast")}


def flops_per_step(method: str, b: int, d_in: int, h: int, d_out: int, r: int) -> float:
    """Multiply-adds x 2 of one training step, counted from each method's products (elementwise work left out).

    Every autograd method runs both frozen layers forward and, because layer 1's adapter makes the hidden
    activations depend on trainable weights, layer 2's input gradient through W2: 3 products of b x d x d.
    """
    lowrank = 2 * b * r * (2 * d_in + 4 * h + 3 * d_out)  # x A^T, (.) B^T, their gradients, both layers
    base = 2 * b * (d_in * h + 2 * h * d_out)
    if method == "article":  # x @ (A B) forward and its gradient, per layer, plus building A B and its grads
        dense = 2 * b * (2 * d_in * h + 3 * h * d_out) + 3 * 2 * r * (d_in * h + h * d_out)
        return base + dense
    if method in ("peft", "autograd"):
        return base + lowrank
    # fast: u, v, R, R^T [v u], R [B2 P], dA1, dA2 over the batch; P = W2 B1 and W2^T (c s R^T u)
    return 2 * b * r * (2 * d_in + 2 * h + 6 * d_out) + 2 * b * d_out + 2 * 2 * r * h * d_out


# ---------------------------------------------------------------------------------------------------------
# Measuring.


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_ticks() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (zeros where there is none)."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - fields[3] - fields[4]) / hz, sum(fields) / hz


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, device):
    """(result, seconds, cores used by other programs meanwhile): the last shows a busy machine."""
    sync(device)
    busy0, own0, start = cpu_ticks()[0], own_cpu(), time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - start
    others = max(0.0, (cpu_ticks()[0] - busy0) - (own_cpu() - own0)) / seconds
    return out, seconds, others


def matmul_peak(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of an n^3 float32 matmul, best of `reps`."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        _, seconds, _ = timed(lambda: a @ b, device)
        best = min(best, seconds)
    return 2 * n**3 / best / 1e9


def max_rel(a: PhaseHistory, b: PhaseHistory) -> float:
    pairs = list(zip(a.train_loss + a.eval_loss, b.train_loss + b.eval_loss, strict=True))
    return max(abs(x - y) / abs(y) for x, y in pairs)


def svd_timing(device: torch.device, d: int = 4096, ranks=(1, 16, 64), dense: bool = True) -> list[str]:
    """Singular values of ΔW = s B A for a d x d layer: from the factors, and once by a dense svdvals."""
    lines = []
    g = torch.Generator().manual_seed(0)
    for r in ranks:
        B = torch.randn(d, r, generator=g).to(device)
        A = torch.randn(r, d, generator=g).to(device)
        factored = analysis.factored_singular_values(B, A, 0.5)
        best = min(timed(lambda B=B, A=A: analysis.factored_singular_values(B, A, 0.5), device)[1]
                   for _ in range(20))
        lines.append(f"  r={r:<3d} from the factors (QR of each, r x r SVD): {best * 1e3:7.2f} ms")
    if dense:  # the last rank's ΔW, densely: the cost does not depend on r
        values, seconds, _ = timed(lambda: torch.linalg.svdvals(0.5 * B @ A), device)
        agree = torch.allclose(values[:r].double().cpu(), factored.double().cpu(), rtol=1e-3)
        lines.append(f"  dense svdvals of the {d} x {d} float32 ΔW (r={r}): {seconds * 1e3:,.0f} ms, "
                     f"{seconds / best:,.0f}x the factored time; same values: {agree}")
    return lines


# ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per method (79 steps each)")
    parser.add_argument("--fast-epochs", type=int, default=100, help="epochs of the fast path's full fine-tune")
    parser.add_argument("--pretrain-epochs", type=int, default=1, help="epochs of pretraining for the base")
    parser.add_argument("--repeats", type=int, default=2, help="runs per method; the best time counts")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-dense-svd", action="store_true", help="skip the slow dense svdvals")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = tempfile.TemporaryDirectory(prefix="lora-bench-cache-")  # a cold, private cache, removed at exit
    os.environ[cache.CACHE_ENV] = folder.name
    device = pick_device(args.device, args.dtype)
    config = preset("article", epochs=args.epochs, pretrain_epochs=args.pretrain_epochs, device=device.type,
                    dtype=args.dtype)
    b, d_in, h, d_out, r = config.batch_size, config.d_in, config.hidden, config.d_out, config.rank
    steps_per_epoch = -(-config.n_samples // b)

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    peak = matmul_peak(device)
    print(f"machine: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"measured peak: 1024^3 float32 matmul {peak:,.0f} GFLOP/s")
    print(f"shapes: n={config.n_samples} {d_in}->{h}->{d_out}, r={r}, α={config.alpha}, batch {b}, Adam lr "
          f"{config.lr}, {args.dtype}; {args.epochs} epochs = {args.epochs * steps_per_epoch} steps per method")

    original, shifted = make_tasks(config, device)
    (status, _, base), seconds, _ = timed(lambda: pretrain(config, original, device), device)
    print(f"base: lora_core autograd pretraining, {config.pretrain_epochs} epoch(s) in {seconds:.1f} s "
          f"({seconds / (config.pretrain_epochs * steps_per_epoch) * 1e3:.2f} ms/step), status {status}")
    ref = copy.deepcopy(base)  # the initial A every method starts from, drawn as lora_core draws it
    add_lora(ref, TARGETS, r, config.alpha, config.init, rng(config.seed, "adapter"))

    runs: dict[str, list] = {name: [] for name in args.methods.split(",")}
    for repeat in range(args.repeats):  # interleaved, so a busy spell of the machine hits every method alike
        for name in runs:
            runs[name].append(timed(lambda name=name: METHODS[name](config, base, shifted, ref), device))
            _, seconds, others = runs[name][-1]
            print(f"  run {repeat + 1}: {name:9s} {seconds:7.2f} s  (other programs used {others:.2f} cores "
                  "meanwhile)", flush=True)
    results = {}
    for name, tries in runs.items():
        (status, history), _, _ = tries[0]
        seconds, others = min((s, o) for _, s, o in tries)
        results[name] = (status, history, seconds / (args.epochs * steps_per_epoch), others)
    if "fast" in results:  # the fast path once more without its one-off precomputation, for the cost of a step
        status, history, per_step, others = results["fast"]
        precompute = min(timed(lambda: fast.FastLoRA(copy.deepcopy(ref), shifted.train, shifted.eval), device)[1]
                         for _ in range(args.repeats))
        results["fast/step"] = (status, history, per_step - precompute / (args.epochs * steps_per_epoch), others)

    reference_name = "autograd" if "autograd" in results else next(iter(results))
    reference = results[reference_name][1]
    tolerance = 1e-4 if args.dtype == "float64" else 1e-3
    print(f"\n{'method':10s} {'ms/step':>9s} {'vs peft':>8s} {'vs article':>10s} {'GFLOP/step':>11s} "
          f"{'GFLOP/s':>8s} {'% peak':>7s} {'last train loss':>16s} {'max rel diff':>13s}")
    for name, (status, history, per_step, _) in results.items():
        flops = flops_per_step(name.split("/")[0], b, d_in, h, d_out, r)
        ratio = {other: f"{results[other][2] / per_step:7.1f}x" if other in results else "-"
                 for other in ("peft", "article")}
        print(f"{name:10s} {per_step * 1e3:9.3f} {ratio['peft']:>8s} {ratio['article']:>10s} {flops / 1e9:11.4f} "
              f"{flops / per_step / 1e9:8.1f} {100 * flops / per_step / 1e9 / peak:6.1f}% "
              f"{history.train_loss[-1]:16.6g} {max_rel(history, reference):13.2e}  {status}")
    if "fast/step" in results:
        print(f"fast/step: the fast path less its precomputation ({precompute:.2f} s: x W1^T and H0 W2^T once), "
              "what each further step costs")
    busiest = max(others for _, _, _, others in results.values())
    if busiest > 0.25:
        print(f"note: other programs used up to {busiest:.2f} cores during these runs; torch's multi-threaded ops "
              "slow down many times when a core they wait for is taken, so rerun on an idle machine, or compare "
              "with --threads 1")
    worst = max(max_rel(history, reference) for _, history, _, _ in results.values())
    print(f"trajectories: per-epoch train and held-out losses, max relative difference to {reference_name} "
          f"{worst:.2e} -> {'SAME' if worst <= tolerance else 'DIFFERENT'} (tolerance {tolerance:g})")

    full = config.replace(epochs=args.fast_epochs, path="fast")
    (status, history, _, _), seconds, others = timed(lambda: finetune(full, base, shifted), device)
    precompute = timed(lambda: fast.FastLoRA(copy.deepcopy(ref), shifted.train, shifted.eval), device)[1]
    steps = args.fast_epochs * steps_per_epoch
    print(f"\narticle fine-tune, fast path, {args.fast_epochs} epochs ({steps} steps): {seconds:.2f} s "
          f"({seconds / steps * 1e3:.3f} ms/step), of which about {precompute:.2f} s precomputing activations; "
          f"status {status}, loss {history.train_loss[0]:.4g} -> {history.train_loss[-1]:.4g} "
          f"(held-out {history.eval_loss[-1]:.4g}); other programs used {others:.2f} cores")
    if "peft" in results:
        print(f"  the same at PEFT's measured speed: {results['peft'][2] * steps:.1f} s")

    print("\nsingular values of ΔW for a 4096 x 4096 layer:")
    for line in svd_timing(device, dense=not args.no_dense_svd):
        print(line)

    print("\ndefault preset end to end (run_experiment; cold = pretrains, cached = base from the cache):")
    for label in ("cold", "cached", "cached"):
        result, seconds, others = timed(lambda: run_experiment(preset("default", device=device.type)), device)
        t = result.timings
        print(f"  {label:6s} {seconds:6.3f} s  pretrain {t['pretrain_s']:.3f}  finetune {t['finetune_s']:.3f} "
              f"({result.path})  analysis {t['analysis_s']:.3f}; merged loss {result.losses['merged_on_shifted']:.3g}"
              f" vs base {result.losses['base_on_shifted']:.3g}; others used {others:.2f} cores")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
