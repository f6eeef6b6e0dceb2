"""Parameter counts and singular values against independent computations."""

import pytest
import torch

from lora_core.analysis import factored_singular_values, full_param_count, lora_param_count, param_counts


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
