"""A variant is a plugin: a new one defined here, outside lora_core, registered with one call, runs through
run_experiment, a sweep, the command line and --save-adapter without any change to lora_core.

The toy variant, "gated LoRA": A starts with orthonormal rows (its own initialisation, `init orthogonal`), and
each adapted layer trains one more number, a gate g that multiplies the update: y = W x + g · s · B A x (its own
layer class, so its forward, ΔW and merge differ from LoRA's and the fast path does not take it)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from lora_core.adapters.attach import adapted, merge_lora
from lora_core.adapters.lora_layer import LoRALinear
from lora_core.adapters.registry import LAYERS, register_variant, unregister_variant
from lora_core.cli.main import main
from lora_core.experiment import run_experiment
from lora_core.settings.choices import INITS, ConfigError
from lora_core.settings.config import preset
from lora_core.settings.path_rule import choose_path
from lora_core.settings.variants import VARIANTS, Variant, adapter_name, notes
from lora_core.sweep import run_sweep
from lora_core.tasks.linear_model import TwoLayerLinear


def orthogonal(weight: torch.Tensor, rank: int, scaling: float, generator: torch.Generator | None):
    """A: [r, d_in] with orthonormal rows (the Q of a Gaussian matrix), B: [d_out, r] = 0."""
    q, _ = torch.linalg.qr(torch.randn(weight.shape[1], rank, generator=generator, dtype=weight.dtype))
    return q.T.contiguous().to(weight.device), weight.new_zeros(weight.shape[0], rank), None


class GatedLoRALinear(LoRALinear):
    kind = "gated"

    def __init__(self, base: nn.Linear, rank: int, alpha: float, init: str = "kaiming",
                 generator: torch.Generator | None = None, use_rslora: bool = False) -> None:
        super().__init__(base, rank, alpha, init, generator, use_rslora)
        self.lora_gate = nn.Parameter(torch.ones((), dtype=base.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return self.base(x) + self.lora_gate * self.scaling * (x @ self.lora_A.T) @ self.lora_B.T

    def delta_weight(self) -> torch.Tensor:
        return self.lora_gate * super().delta_weight()

    def change_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        b, a = super().change_factors()
        return self.lora_gate.detach() * b, a

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        return {"lora_gate": self.lora_gate.detach().reshape(1)}


class Gated(Variant):
    name, init, layer, fast = "gated LoRA", "orthogonal", "gated", False
    what_to_see = "A starts orthonormal and a trained gate per layer scales the update"

    def extra_trainable(self, d_in: int, d_out: int) -> int:
        return 1


SMALL = dict(d_in=16, hidden=16, d_out=16, n_samples=256, n_eval=64, pretrain_epochs=15, epochs=15, batch_size=32,
             shift="low_rank", shift_rank=2, rank=2, alpha=2.0, init="orthogonal", device="cpu", seed=3)


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_variant(Gated(), initialiser=orthogonal, label="orthogonal A", layer=GatedLoRALinear)
    yield
    unregister_variant("gated LoRA")  # the other tests of this process see lora_core's variants only
    assert "orthogonal" not in INITS and "gated" not in LAYERS and all(v.name != "gated LoRA" for v in VARIANTS)


def test_its_initialisation_and_layer_are_the_ones_a_config_builds():
    config = preset("default", **SMALL)
    base = TwoLayerLinear(16, 16, 16, torch.Generator().manual_seed(0))
    model = adapted(base, config)
    assert type(model.layer1) is GatedLoRALinear and type(model.layer2) is GatedLoRALinear
    a = model.layer1.lora_A.detach()
    assert torch.allclose(a @ a.T, torch.eye(2), atol=1e-5)  # orthonormal rows, as its initialiser makes them
    assert adapter_name(config) == "LoRA + gated LoRA"
    assert any(n.startswith("gated LoRA: A starts orthonormal") for n in notes(config))
    assert choose_path(config) == "autograd"  # fast = False: the fast path's formulas know no gate
    with pytest.raises(ConfigError, match="does not apply to gated LoRA"):
        choose_path(preset("default", **SMALL, path="fast"))


def test_a_run_trains_the_gate_and_merges_exactly():
    result = run_experiment(preset("default", **SMALL))
    assert result.status == "ok" and result.path == "autograd"
    assert result.losses["merged_on_shifted"] < result.losses["base_on_shifted"] / 10
    assert result.merge_max_abs_diff < 1e-4  # its merge folds g · s · B A into W
    model = adapted(TwoLayerLinear(16, 16, 16), preset("default", **SMALL))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert result.params.lora_trainable == trainable == 2 * ((16 + 16) * 2 + 1)  # the gates are counted


def test_merging_a_gated_layer_adds_g_times_s_b_a():
    layer = GatedLoRALinear(nn.Linear(5, 4, bias=False), 2, 4.0, "orthogonal", torch.Generator().manual_seed(1))
    with torch.no_grad():
        layer.lora_B.normal_()
        layer.lora_gate.fill_(0.5)
    x = torch.randn(3, 5)
    expected = x @ (layer.base.weight + 0.5 * 2.0 * layer.lora_B @ layer.lora_A).T
    assert torch.allclose(layer(x), expected, atol=1e-6)
    model = nn.Sequential(layer)
    merge_lora(model)
    assert torch.allclose(model(x), expected, atol=1e-6)


def test_a_sweep_keeps_its_initialisation_for_plain_lora_members():
    sweep = run_sweep(preset("default", **SMALL), ranks=(1, 2), methods=("lora", "full"))
    assert [m.status for m in sweep.members] == ["ok"] * 3
    lora = [m for m, name in zip(sweep.members, sweep.methods, strict=True) if name == "lora"]
    assert {m.config["init"] for m in lora} == {"orthogonal"}
    assert lora[1].losses["merged_on_shifted"] < lora[0].losses["merged_on_shifted"]  # the shift has rank 2
    for member in lora:  # trained alone (the batched paths know no gate), so each is its single run
        assert member.path == "autograd"
        single = run_experiment(preset("default", **{**SMALL, "rank": member.config["rank"]}))
        assert member.losses == pytest.approx(single.losses, rel=1e-6)


def test_the_command_line_runs_it_and_saves_its_adapter(tmp_path, capsys):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    assert main([*flags, "--json", str(tmp_path / "run.json"), "--save-adapter", str(tmp_path / "adapter")]) == 0
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["config"]["init"] == "orthogonal" and data["status"] == "ok"
    weights = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    gates = {k: v for k, v in weights.items() if k.endswith("lora_gate")}
    assert set(gates) == {"base_model.model.layer1.lora_gate", "base_model.model.layer2.lora_gate"}
    assert all(g.item() != 1.0 for g in gates.values())  # trained away from where it started
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["init_lora_weights"] is True and config["use_dora"] is False
    capsys.readouterr()
    assert main([*flags[:-1], "--init=nonsense"]) == 2  # an unknown init is still refused, naming the new one
    assert "orthogonal" in capsys.readouterr().err
