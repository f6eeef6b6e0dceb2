"""A task is a plugin: a new task defined here, outside lora_core, registered with one call, runs through
run_experiment, a sweep, the command line and --save-adapter without any change to lora_core.

The toy task: one linear layer `proj` (d_in -> d_out) learns y = x W*, then a rank-2 change of W*."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from lora_core.cli.main import main
from lora_core.experiment import run_experiment
from lora_core.settings.budget import Estimate
from lora_core.settings.config import preset
from lora_core.settings.task_specs import TaskSpec
from lora_core.sweep import run_sweep
from lora_core.tasks.data import Split, Task, rng
from lora_core.tasks.registry import TASK_KINDS, TaskKind, register_task, unregister_task

NAME = "toy_projection"


class Projection(nn.Module):
    def __init__(self, d_in: int, d_out: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, d_out, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(d_out, d_in, generator=generator) * d_in ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def _tasks(config, device="cpu") -> tuple[Task, Task]:
    g = rng(config.seed, "original")
    target = torch.randn(config.d_in, config.d_out, generator=g)
    u, v = torch.randn(config.d_in, 2, generator=g), torch.randn(2, config.d_out, generator=g)

    def split(theta: torch.Tensor, n: int) -> Split:
        x = torch.randn(n, config.d_in, generator=g)
        return Split(x.to(device), (x @ theta).to(device))

    shifted = target + u @ v / 2
    return (Task(None, split(target, config.n_samples), split(target, config.n_eval)),
            Task(None, split(shifted, config.n_samples), split(shifted, config.n_eval)))


def _estimate(config) -> Estimate:
    weights = config.d_in * config.d_out
    rows = config.n_samples + config.n_eval
    steps = (config.pretrain_epochs + config.epochs) * -(-config.n_samples // config.batch_size)
    return Estimate(bytes=64 * 2**20 + 4 * 8 * (weights + 2 * rows * (config.d_in + config.d_out)),
                    macs=6.0 * weights * rows * (config.pretrain_epochs + config.epochs), seconds=0.01 * steps,
                    steps=steps)


SPEC = TaskSpec(layer_shapes=lambda c: {"proj": (c.d_in, c.d_out)}, targets=lambda c: ("proj",),
                rows=lambda c: (c.n_samples, c.n_eval), loss_name="mean squared error", classifies=False,
                biases=False, linear_model=False, shift_label=lambda c: "a rank-2 change of the projection")
KIND = TaskKind(SPEC, make_tasks=_tasks, build_model=lambda c, g: Projection(c.d_in, c.d_out, g))
SMALL = dict(task=NAME, d_in=12, d_out=10, n_samples=256, n_eval=64, pretrain_epochs=60, epochs=40, batch_size=32,
             rank=2, alpha=2.0, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_task(NAME, "a toy projection", SPEC, KIND, _estimate)
    yield
    unregister_task(NAME)  # the other tests of this process see the two tasks of lora_core only
    assert NAME not in TASK_KINDS


def test_a_registered_task_runs_and_its_adapter_learns_the_shift():
    result = run_experiment(preset("default", **SMALL))
    assert result.status == "ok" and result.path == "autograd"
    assert set(result.spectra) == {"proj"}
    assert len([s for s in result.spectra["proj"].delta_factored if s > 1e-6]) <= 2  # rank ≤ r
    assert result.losses["merged_on_shifted"] < result.losses["base_on_shifted"] / 10
    assert result.merge_max_abs_diff < 1e-4
    assert result.params.lora_trainable == (12 + 10) * 2


def test_a_sweep_over_the_registered_task():
    sweep = run_sweep(preset("default", **SMALL), ranks=(1, 2), methods=("lora", "full"))
    assert [m.status for m in sweep.members] == ["ok"] * 3
    by_rank = {m.config["rank"]: m.losses["merged_on_shifted"] for m, name in zip(sweep.members, sweep.methods,
                                                                                strict=True) if name == "lora"}
    assert by_rank[2] < by_rank[1]  # the shift has rank 2


def test_a_second_registration_of_a_name_is_refused():
    with pytest.raises(ValueError, match="exists already"):
        register_task(NAME, "again", SPEC, KIND, _estimate)


def test_the_command_line_runs_it_and_saves_its_adapter(tmp_path, capsys):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    assert main([*flags, "--json", str(tmp_path / "run.json"), "--save-adapter", str(tmp_path / "adapter")]) == 0
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["config"]["task"] == NAME and data["status"] == "ok"
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["proj"] and config["r"] == 2
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {tuple(t.shape) for t in weights.values()} == {(2, 12), (10, 2)}
    capsys.readouterr()
    assert main([*flags, "--rank", "11"]) == 2  # its own layer shapes (12 -> 10) bound the rank
    assert "smallest dimension" in capsys.readouterr().err
