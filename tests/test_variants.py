"""LoRA's variants against Hugging Face PEFT 0.21.2 on the same weights: rsLoRA and DoRA (forward, delta weight,
merge), PiSSA and OLoRA (starting factors and residual base), LoRA+ (optimizer groups), and the saved adapters
loaded back by `PeftModel.from_pretrained`. Then what the app says about each: the fast path where it is
exact, the spectra, the parameter counts."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lora_core.adapters.attach import add_lora, lora_layers, merge_lora
from lora_core.adapters.peft_format import load_base_weights, save_adapter
from lora_core.experiment import finetune, pretrain, run_experiment
from lora_core.measure import analysis
from lora_core.settings.config import ConfigError, preset
from lora_core.settings.variants import lora_scaling, optimizer_groups
from lora_core.tasks.data import rng
from lora_core.tasks.linear import make_tasks
from lora_core.tasks.linear_model import TARGETS, TwoLayerLinear
from lora_core.training import fast
from lora_core.training.loop import train
from lora_core.training.trainers import choose_path

peft = pytest.importorskip("peft")
D_IN, HIDDEN, D_OUT = 12, 10, 8
SMALL = dict(n_samples=200, n_eval=50, d_in=D_IN, hidden=HIDDEN, d_out=D_OUT, pretrain_epochs=4, epochs=5,
             batch_size=32, device="cpu")


def base_model(seed: int = 0) -> TwoLayerLinear:
    return TwoLayerLinear(D_IN, HIDDEN, D_OUT, torch.Generator().manual_seed(seed), torch.float32)


def ours(model, *, rank=3, alpha=5.0, init="kaiming", use_rslora=False, use_dora=False):
    model = copy.deepcopy(model)
    add_lora(model, TARGETS, rank, alpha, init, torch.Generator().manual_seed(1), use_rslora=use_rslora,
             use_dora=use_dora)
    return model


def theirs(model, *, rank=3, alpha=5.0, init=True, use_rslora=False, use_dora=False):
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(TARGETS), init_lora_weights=init,
                             use_rslora=use_rslora, use_dora=use_dora)
    return peft.get_peft_model(copy.deepcopy(model), config)


def peft_layer(model, name):
    return model.base_model.model.get_submodule(name)


@torch.no_grad()
def as_if_trained(model):
    """Move every trainable factor away from its start, so that no comparison below is of zeros."""
    g = torch.Generator().manual_seed(7)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


@torch.no_grad()
def copy_into_peft(mine, peft_model):
    for name, layer in lora_layers(mine).items():
        target = peft_layer(peft_model, name)
        target.lora_A["default"].weight.copy_(layer.lora_A)
        target.lora_B["default"].weight.copy_(layer.lora_B)
        if hasattr(layer, "lora_magnitude"):
            target.lora_magnitude_vector["default"].weight.copy_(layer.lora_magnitude)


@pytest.mark.parametrize("use_rslora, use_dora", [(True, False), (False, True), (True, True), (False, False)])
def test_rslora_and_dora_give_peft_forward_delta_weight_and_merge(use_rslora, use_dora):
    base = base_model()
    mine = as_if_trained(ours(base, use_rslora=use_rslora, use_dora=use_dora))
    peft_model = theirs(base, use_rslora=use_rslora, use_dora=use_dora)
    copy_into_peft(mine, peft_model)
    x = torch.randn(16, D_IN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(mine(x), peft_model(x), rtol=1e-5, atol=1e-5)
        for name, layer in lora_layers(mine).items():
            assert layer.scaling == peft_layer(peft_model, name).scaling["default"] == (
                5.0 / 3 ** 0.5 if use_rslora else 5.0 / 3)
            torch.testing.assert_close(layer.delta_weight(), peft_layer(peft_model, name).get_delta_weight("default"))
        merged, peft_merged = merge_lora(copy.deepcopy(mine)), peft_model.merge_and_unload()
        for name in TARGETS:  # DoRA's merge rescales every row: W' = m (W + sBA) / ||W + sBA||
            torch.testing.assert_close(merged.get_submodule(name).weight, peft_merged.get_submodule(name).weight,
                                       rtol=1e-5, atol=1e-6)


def test_dora_treats_the_norm_as_a_constant_in_the_backward_pass_as_peft_does():
    base = base_model()
    mine = as_if_trained(ours(base, use_dora=True))
    peft_model = theirs(base, use_dora=True)
    copy_into_peft(mine, peft_model)
    x = torch.randn(16, D_IN, generator=torch.Generator().manual_seed(4))
    mine(x).square().sum().backward()
    peft_model(x).square().sum().backward()
    for name, layer in lora_layers(mine).items():
        other = peft_layer(peft_model, name)
        torch.testing.assert_close(layer.lora_A.grad, other.lora_A["default"].weight.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.lora_B.grad, other.lora_B["default"].weight.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(layer.lora_magnitude.grad, other.lora_magnitude_vector["default"].weight.grad,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("init", ["pissa", "olora"])
@pytest.mark.parametrize("use_dora", [False, True])
def test_pissa_and_olora_start_from_peft_factors_and_residual(init, use_dora):
    base = base_model(seed=5)
    mine, peft_model = ours(base, init=init, use_dora=use_dora), theirs(base, init=init, use_dora=use_dora)
    x = torch.randn(16, D_IN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(mine(x), base(x), rtol=1e-5, atol=1e-5)  # the layer still computes W x
        for name, layer in lora_layers(mine).items():
            other = peft_layer(peft_model, name)
            torch.testing.assert_close(layer.lora_A, other.lora_A["default"].weight, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(layer.lora_B, other.lora_B["default"].weight, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(layer.base.weight, other.base_layer.weight, rtol=1e-6, atol=1e-6)
            if use_dora:
                torch.testing.assert_close(layer.lora_magnitude, other.lora_magnitude_vector["default"].weight)
            # independent of PEFT: s·B·A is the original W's best rank-r part (PiSSA), or spans its first columns
            w = base.get_submodule(name).weight
            if init == "pissa":
                u, s, vh = torch.linalg.svd(w)
                torch.testing.assert_close(layer.delta_weight(), (u[:, :3] * s[:3]) @ vh[:3], rtol=1e-4, atol=1e-5)
            else:
                q, _ = torch.linalg.qr(w)
                torch.testing.assert_close(layer.lora_B.T @ layer.lora_B, torch.eye(3), atol=1e-5, rtol=0)
                torch.testing.assert_close(q[:, :3] @ q[:, :3].T @ w, layer.delta_weight() + q[:, :3] @ q[:, :3].T
                                           @ layer.base.weight, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_dora", [False, True])
def test_loraplus_groups_and_learning_rates_are_peft_ones(use_dora):
    base = base_model()
    mine, peft_model = ours(base, use_dora=use_dora), theirs(base, use_dora=use_dora)
    from peft.optimizers import create_loraplus_optimizer

    peft_opt = create_loraplus_optimizer(peft_model, torch.optim.Adam, lr=2e-3, loraplus_lr_ratio=16.0)
    peft_names = {id(p): n for n, p in peft_model.named_parameters()}

    def short(name):  # base_model.model.layer1.lora_A.default.weight -> layer1.lora_A
        name = name.removeprefix("base_model.model.").replace(".default", "").removesuffix(".weight")
        return name.replace("lora_magnitude_vector", "lora_magnitude")

    peft_groups = {(g["lr"], frozenset(short(peft_names[id(p)]) for p in g["params"]))
                   for g in peft_opt.param_groups if g["params"]}
    my_names = {id(p): n for n, p in mine.named_parameters()}
    my_groups = {(g["lr"], frozenset(my_names[id(p)] for p in g["params"]))
                 for g in optimizer_groups(mine, 2e-3, 16.0)}
    assert my_groups == peft_groups
    assert any("layer2.lora_B" in names and lr == 2e-3 * 16 for lr, names in my_groups)


def _trained(config):
    original, shifted = make_tasks(config, "cpu")
    _, _, base = pretrain(config, original, torch.device("cpu"))
    tuned = finetune(config, base, shifted)
    return base, tuned, shifted


@pytest.mark.parametrize("variant", [dict(use_rslora=True), dict(use_dora=True), dict(init="pissa"),
                                     dict(init="olora"), dict(init="pissa", use_dora=True, lr_ratio=4.0)])
def test_saved_adapters_load_in_peft_with_the_projects_outputs(variant, tmp_path):
    config = preset("default", **SMALL, rank=2, alpha=3.0, **variant)
    base, tuned, shifted = _trained(config)
    folder = save_adapter(tuned.model, tmp_path / "adapter", original=base)
    saved = json.loads((folder / "adapter_config.json").read_text())
    assert saved["use_rslora"] == config.use_rslora and saved["use_dora"] == config.use_dora
    assert saved["init_lora_weights"] == (config.init if config.init in ("pissa", "olora") else True)
    x = shifted.eval.x
    with torch.no_grad():
        expected = tuned.model(x)
        # PEFT reads init_lora_weights and re-derives PiSSA's/OLoRA's residual from the original weights
        start = TwoLayerLinear(D_IN, HIDDEN, D_OUT)
        start.load_state_dict(load_base_weights(folder, original=config.init in ("pissa", "olora")))
        loaded = peft.PeftModel.from_pretrained(start, str(folder))
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-5)
        # and the base in base_model.safetensors plus the adapter is the model, with no re-initialisation
        residual = TwoLayerLinear(D_IN, HIDDEN, D_OUT)
        residual.load_state_dict(load_base_weights(folder))
        plain = peft.LoraConfig.from_pretrained(str(folder))
        plain.init_lora_weights = True
        loaded = peft.PeftModel.from_pretrained(residual, str(folder), config=plain)
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-5)


def test_a_pissa_adapter_cannot_be_saved_without_the_original_weights(tmp_path):
    _, tuned, _ = _trained(preset("default", **SMALL, rank=2, init="pissa"))
    with pytest.raises(ValueError, match="original model"):
        save_adapter(tuned.model, tmp_path / "a")


FAST_VARIANTS = [dict(use_rslora=True), dict(lr_ratio=16.0), dict(init="pissa"), dict(init="olora"),
                 dict(init="olora", use_rslora=True, lr_ratio=4.0)]


@pytest.mark.parametrize("variant", FAST_VARIANTS)
def test_fast_path_follows_the_autograd_trajectory_for_every_variant_it_takes(variant):
    config = preset("default", **SMALL, dtype="float64", rank=3, alpha=2.0, lr=1e-2, **variant)
    assert choose_path(config) == "fast"
    original, shifted = make_tasks(config, "cpu")
    _, _, base = pretrain(config, original, torch.device("cpu"))
    runs = []
    for trainer in (train, fast.train_fast):
        model = copy.deepcopy(base)
        add_lora(model, TARGETS, config.rank, config.alpha, config.init, rng(config.seed, "adapter"),
                 use_rslora=config.use_rslora)
        assert fast.applies(model)
        status, history = trainer(model, shifted.train, shifted.eval, epochs=config.epochs,
                                  batch_size=config.batch_size, lr=config.lr, seed=config.seed, phase="finetune",
                                  lr_ratio=config.lr_ratio)
        runs.append((status, history, model))
    (s1, h1, m1), (s2, h2, m2) = runs
    assert s1 == s2 == "ok"
    torch.testing.assert_close(torch.tensor(h1.eval_loss), torch.tensor(h2.eval_loss), rtol=1e-9, atol=0)
    torch.testing.assert_close(torch.tensor(h1.train_loss), torch.tensor(h2.train_loss), rtol=1e-9, atol=0)
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=1e-9, atol=1e-12)


def test_loraplus_changes_the_trajectory_and_its_ratio_is_what_b_moves_faster_by():
    config = preset("default", **{**SMALL, "epochs": 1, "n_samples": 32, "batch_size": 32}, dtype="float64", rank=2)
    original, shifted = make_tasks(config, "cpu")
    _, _, base = pretrain(config, original, torch.device("cpu"))
    moved = {}
    for ratio in (1.0, 8.0):
        tuned = finetune(config.replace(lr_ratio=ratio), base, shifted).model
        moved[ratio] = {n: p.detach().abs().max().item() for n, p in tuned.named_parameters() if "lora_B" in n}
    # one Adam step from B = 0 moves every entry by about lr (Adam's first step is lr * sign(gradient))
    for name in moved[1.0]:
        assert moved[8.0][name] == pytest.approx(8 * moved[1.0][name], rel=1e-6)


def test_dora_runs_on_the_autograd_path_and_the_result_says_so():
    config = preset("default", **SMALL, use_dora=True)
    assert choose_path(config) == "autograd"
    with pytest.raises(ConfigError, match="DoRA"):
        config.replace(path="fast")
    result = run_experiment(config)
    assert result.status == "ok" and result.path == "autograd"
    assert result.merge_max_abs_diff < 1e-4


def test_spectra_tell_each_variants_truth():
    rank = 2
    lora, pissa, dora = (run_experiment(preset("default", **SMALL, rank=rank, **v))
                         for v in ({}, dict(init="pissa"), dict(use_dora=True)))
    for layer in TARGETS:
        # LoRA: ΔW has r directions, and the factors give the merged spectrum
        assert len(lora.spectra[layer].delta_factored) == rank
        assert analysis.direction_count(lora.spectra[layer].delta_merged) == rank
        # PiSSA: ΔW from the ORIGINAL W (not the residual) is s(BA − B0A0): up to 2r directions, from factors too
        s = pissa.spectra[layer]
        assert len(s.delta_factored) == 2 * rank
        assert analysis.direction_count(s.delta_merged) == 2 * rank
        assert analysis.factored_gap(s) < 1e-3
        # DoRA: rescaled rows make W' − W of full rank, while s·B·A keeps r
        d = dora.spectra[layer]
        assert analysis.direction_count(d.delta_merged) == len(d.weight_before)  # min(d_in, d_out) of the layer
        assert len(d.delta_factored) == rank


def test_dora_counts_its_magnitude_vector_among_the_trainable_parameters():
    config = preset("default", **SMALL, rank=3, use_dora=True)
    _, tuned, _ = _trained(config)
    trainable = sum(p.numel() for p in tuned.model.parameters() if p.requires_grad)
    counts = run_experiment(config).params
    assert counts.lora_trainable == trainable == (D_IN + HIDDEN) * 3 + HIDDEN + (HIDDEN + D_OUT) * 3 + D_OUT
    assert [layer.magnitude for layer in counts.layers] == [HIDDEN, D_OUT]


def test_rslora_scaling_is_alpha_over_root_r():
    assert lora_scaling(8.0, 16, use_rslora=True) == 2.0 and lora_scaling(8.0, 16) == 0.5
    assert preset("default", rank=4, alpha=2.0, use_rslora=True).scaling == 1.0
