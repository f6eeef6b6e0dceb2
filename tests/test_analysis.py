"""Parameter counts and singular values against independent computations."""

from types import SimpleNamespace

import pytest
import torch

from lora_core.measure.analysis import (
    break_even_rank,
    cumulative_energy,
    direction_count,
    factored_gap,
    factored_singular_values,
    full_param_count,
    lora_param_count,
    loss_improvement,
    param_counts,
    shift_singular_values,
)
from lora_core.settings.config import preset
from lora_core.settings.results import LayerSpectra
from lora_core.tasks.linear import make_tasks


def test_parameter_counts():
    assert lora_param_count(1001, 1000, 1) == 2001
    assert full_param_count(1001, 1000) == 1_001_000
    counts = param_counts({"a": (4096, 4096), "b": (10, 3)}, rank=8)
    assert [layer.lora for layer in counts.layers] == [8192 * 8, 13 * 8]
    assert counts.lora_trainable == 8192 * 8 + 13 * 8
    assert counts.full_trainable == 4096 * 4096 + 30


@pytest.mark.parametrize("shape", [(50, 3, 40), (7, 7, 30), (30, 1, 20)])
def test_factored_singular_values_equal_dense_svd(shape):
    d_out, r, d_in = shape
    g = torch.Generator().manual_seed(0)
    B = torch.randn(d_out, r, generator=g, dtype=torch.float64)
    A = torch.randn(r, d_in, generator=g, dtype=torch.float64)
    dense = torch.linalg.svdvals(0.7 * B @ A)[:r]
    factored = factored_singular_values(B, A, 0.7)
    assert factored.shape == (r,)
    torch.testing.assert_close(factored, dense)
    assert torch.all(factored[:-1] >= factored[1:])


def test_factored_singular_values_of_rank_deficient_factors():
    B = torch.ones(20, 3, dtype=torch.float64)  # rank 1 product
    A = torch.randn(3, 15, dtype=torch.float64)
    values = factored_singular_values(B, A)
    torch.testing.assert_close(values, torch.linalg.svdvals(B @ A)[:3], atol=1e-10, rtol=1e-10)
    assert values[1:].abs().max() < 1e-10


def test_direction_count_and_cumulative_energy():
    assert direction_count([3.0, 1e-7, 0.0]) == 1
    assert cumulative_energy([3.0, 4.0]) == pytest.approx([9 / 25, 1.0])
    assert cumulative_energy([0.0, 0.0]) == [0.0, 0.0] and direction_count([]) == 0


def test_factored_gap_and_break_even_rank():
    s = LayerSpectra([3.0, 1.0], [3.0, 0.999, 1e-8], [], [])
    assert factored_gap(s) == pytest.approx(0.001 / 3)
    assert break_even_rank(4096, 4096) == 2048
    d, k = 300, 100  # at the break-even rank LoRA's count equals the full count
    assert lora_param_count(d, k, break_even_rank(d, k)) == pytest.approx(full_param_count(d, k))


def test_loss_improvement_is_the_ratio_or_none():
    result = SimpleNamespace(losses={"base_on_shifted": 60.0, "merged_on_shifted": 0.012})
    assert loss_improvement(result) == pytest.approx(5000)
    result.losses["merged_on_shifted"] = None
    assert loss_improvement(result) is None


@pytest.mark.parametrize("shift", ["constant", "low_rank", "full_rank"])
def test_shift_singular_values_match_the_task(shift):
    cfg = preset("default", shift=shift, shift_rank=3, d_in=12, hidden=8, d_out=10, n_samples=4, n_eval=4)
    original, shifted = make_tasks(cfg)
    expected = torch.linalg.svdvals((shifted.theta - original.theta).double())
    assert shift_singular_values(cfg) == pytest.approx(expected.tolist(), abs=1e-5)
    assert direction_count(shift_singular_values(cfg)) == {"constant": 1, "low_rank": 3, "full_rank": 10}[shift]
