"""LoRALinear against independent dense computations and against PEFT's own LoRA layer."""

import math

import pytest
import torch
import torch.nn as nn

from lora_core.adapters.attach import add_lora, lora_layers, merge_lora
from lora_core.adapters.lora_layer import LoRALinear
from lora_core.tasks.linear_model import TwoLayerLinear


@pytest.fixture(autouse=True)
def float64_by_default():
    """Exact comparisons in float64, restored afterwards so other test modules keep float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def make_layer(d_in=7, d_out=5, rank=3, alpha=6.0, init="kaiming", seed=0):
    g = torch.Generator().manual_seed(seed)
    base = nn.Linear(d_in, d_out, bias=False)
    with torch.no_grad():
        base.weight.copy_(torch.randn(d_out, d_in, generator=g))
    layer = LoRALinear(base, rank, alpha, init, g)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(d_out, rank, generator=g))
    return layer


@pytest.mark.parametrize("init", ["gaussian", "kaiming"])
def test_delta_weight_is_zero_at_start(init):
    layer = LoRALinear(nn.Linear(9, 4, bias=False), rank=2, alpha=1.0, init=init)
    assert torch.count_nonzero(layer.delta_weight()) == 0
    assert torch.count_nonzero(layer.lora_A) == layer.lora_A.numel()  # A is random, B alone is zero
    x = torch.randn(3, 9)
    assert torch.equal(layer(x), layer.base(x))


def test_shapes_follow_peft_orientation():
    layer = LoRALinear(nn.Linear(9, 4, bias=False), rank=2, alpha=1.0)
    assert layer.lora_A.shape == (2, 9) and layer.lora_B.shape == (4, 2)
    assert layer.scaling == 0.5


def test_initialisations_have_the_documented_spread():
    big = nn.Linear(400, 60, bias=False)
    gauss = LoRALinear(big, 50, 1.0, "gaussian", torch.Generator().manual_seed(1)).lora_A
    assert abs(gauss.std().item() - 1.0) < 0.02
    kaiming = LoRALinear(nn.Linear(400, 60, bias=False), 50, 1.0, "kaiming", torch.Generator().manual_seed(1)).lora_A
    bound = 1 / math.sqrt(400)
    assert kaiming.abs().max().item() <= bound
    assert abs(kaiming.std().item() - bound / math.sqrt(3)) < 0.02 * bound


def test_forward_equals_dense_formula():
    layer = make_layer()
    x = torch.randn(11, 7)
    W, A, B = layer.base.weight, layer.lora_A, layer.lora_B
    expected = x @ (W + (6.0 / 3) * B @ A).T
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.delta_weight(), 2.0 * B @ A)


def test_merge_then_unmerge_restores_weight_and_output():
    layer = make_layer()
    x = torch.randn(4, 7)
    w0 = layer.base.weight.clone()
    before = layer(x)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer.base.weight, w0 + layer.delta_weight())
    torch.testing.assert_close(layer(x), before)
    layer.merge()  # merging twice must not add ΔW twice
    torch.testing.assert_close(layer.base.weight, w0 + layer.delta_weight())
    layer.unmerge()
    torch.testing.assert_close(layer.base.weight, w0, rtol=0, atol=1e-12)


def test_rank_out_of_range_is_refused():
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(3, 8, bias=False), rank=4, alpha=1.0)


def test_add_lora_freezes_base_and_merge_lora_restores_plain_linears():
    model = TwoLayerLinear(6, 5, 4, torch.Generator().manual_seed(0), torch.float64)
    adapters = add_lora(model, ["layer1", "layer2"], rank=2, alpha=2.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer1.lora_A", "layer1.lora_B", "layer2.lora_A", "layer2.lora_B"}
    assert set(lora_layers(model)) == {"layer1", "layer2"}
    for layer in adapters.values():
        with torch.no_grad():
            layer.lora_B.normal_()
    x = torch.randn(3, 6)
    out = model(x)
    merge_lora(model)
    assert isinstance(model.layer1, nn.Linear) and isinstance(model.layer2, nn.Linear)
    torch.testing.assert_close(model(x), out)
    with pytest.raises(ValueError, match=r"not an nn\.Linear"):
        add_lora(TwoLayerLinear(6, 5, 4), ["nope"], 1, 1.0)


def test_matches_peft_lora_layer():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ours = TwoLayerLinear(8, 6, 5, torch.Generator().manual_seed(0), torch.float64)
    theirs_base = TwoLayerLinear(8, 6, 5, torch.Generator().manual_seed(0), torch.float64)
    adapters = add_lora(ours, ["layer1", "layer2"], rank=2, alpha=3.0)
    theirs = peft.get_peft_model(theirs_base, peft.LoraConfig(r=2, lora_alpha=3.0, target_modules=["layer1", "layer2"]))
    for name, layer in adapters.items():
        with torch.no_grad():
            layer.lora_B.normal_()
        peft_layer = theirs.base_model.model.get_submodule(name)
        assert peft_layer.scaling["default"] == layer.scaling
        with torch.no_grad():
            peft_layer.lora_A["default"].weight.copy_(layer.lora_A)
            peft_layer.lora_B["default"].weight.copy_(layer.lora_B)
        torch.testing.assert_close(peft_layer.get_delta_weight("default"), layer.delta_weight())
    x = torch.randn(10, 8)
    torch.testing.assert_close(theirs(x), ours(x))
