"""On a CUDA device: every training path against the same run on the CPU (marker `cuda`; skipped without CUDA).

Needs only what lora_core needs (torch, safetensors) and pytest, so that `scripts/gpu_check.sh` can run it on a
machine without Streamlit or Plotly. Trajectories: float64 to 1e-9 relative, float32 within float32 rounding.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lora_core.experiment import run_experiment
from lora_core.settings.config import preset

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]
SMALL = dict(d_in=24, hidden=20, d_out=16, n_samples=512, n_eval=128, pretrain_epochs=6, epochs=6, batch_size=64)
VARIANTS = {"lora, fast": dict(path="fast"), "lora, autograd": dict(path="autograd"), "rsLoRA": dict(use_rslora=True),
            "DoRA": dict(use_dora=True), "PiSSA": dict(init="pissa"), "OLoRA": dict(init="olora"),
            "LoRA+": dict(lr_ratio=4.0), "full": dict(method="full")}


def _relative(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-30) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_path_on_cuda_follows_the_cpu(variant, dtype, tolerance):
    settings = dict(**SMALL, dtype=dtype, rank=3, **VARIANTS[variant])
    on_gpu = run_experiment(preset("default", device="cuda", **settings))
    on_cpu = run_experiment(preset("default", device="cpu", **settings))
    assert on_gpu.device.startswith("cuda") and on_gpu.status == on_cpu.status == "ok"
    assert on_gpu.path == on_cpu.path
    for phase in ("pretrain", "finetune"):
        assert _relative(on_gpu.history[phase].eval_loss, on_cpu.history[phase].eval_loss) < tolerance, phase
    assert _relative([on_gpu.losses["merged_on_shifted"]], [on_cpu.losses["merged_on_shifted"]]) < tolerance


def test_a_sweep_on_cuda_follows_the_cpu():
    from lora_core.sweep import run_sweep

    runs = {device: run_sweep(preset("default", **SMALL, device=device, dtype="float64"), ranks=(1, 3),
                              methods=("lora", "dora", "pissa", "full")) for device in ("cuda", "cpu")}
    assert [m.path for m in runs["cuda"].members] == [m.path for m in runs["cpu"].members]
    assert "batched" in {m.path for m in runs["cuda"].members}
    for gpu, cpu in zip(runs["cuda"].members, runs["cpu"].members, strict=True):
        assert _relative(gpu.history["finetune"].eval_loss, cpu.history["finetune"].eval_loss) < 1e-9


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_the_command_line_trains_on_the_gpu(device):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    proc = subprocess.run([sys.executable, "-m", "lora_core", *flags, "--device", device, "--json", "-"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["device"].startswith("cuda")


def test_an_adapter_trained_on_the_gpu_loads_on_the_cpu(tmp_path):
    from safetensors.torch import load_file

    from lora_core.adapters.attach import add_lora
    from lora_core.adapters.peft_format import load_base_weights
    from lora_core.tasks.linear import make_tasks
    from lora_core.tasks.linear_model import TARGETS, TwoLayerLinear
    from lora_core.training.loop import held_out_loss as mse

    config = preset("default", **SMALL, device="cuda", rank=2, use_dora=True)
    result = run_experiment(config, save_adapter_to=tmp_path / "adapter")
    model = TwoLayerLinear(config.d_in, config.hidden, config.d_out)
    model.load_state_dict(load_base_weights(tmp_path / "adapter"))
    add_lora(model, TARGETS, config.rank, config.alpha, use_dora=True)
    tensors = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    with torch.no_grad():
        for name in TARGETS:
            layer = model.get_submodule(name)
            layer.lora_A.copy_(tensors[f"base_model.model.{name}.lora_A.weight"])
            layer.lora_B.copy_(tensors[f"base_model.model.{name}.lora_B.weight"])
            layer.lora_magnitude.copy_(tensors[f"base_model.model.{name}.lora_magnitude_vector"])
    _, shifted = make_tasks(config.replace(device="cpu"), "cpu")
    assert mse(model, shifted.eval) == pytest.approx(result.losses["adapter_on_shifted"], rel=1e-4)
