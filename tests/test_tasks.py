"""The tasks' shifts have the rank and size they claim; held-out samples are new samples."""

import pytest
import torch

from lora_core.settings.config import make_config
from lora_core.tasks.linear import make_tasks, shift_matrix

SIZES = {"d_in": 30, "hidden": 20, "d_out": 25, "n_samples": 64, "n_eval": 32}


@pytest.mark.parametrize("shift, expected_rank", [("constant", 1), ("low_rank", 3), ("full_rank", 25)])
def test_shift_has_the_rank_it_claims(shift, expected_rank):
    config = make_config(**SIZES, shift=shift, shift_rank=3, shift_scale=2.0, dtype="float64")
    original, shifted = make_tasks(config)
    delta = shifted.theta - original.theta
    assert delta.shape == (30, 25)
    assert torch.linalg.matrix_rank(delta).item() == expected_rank


def test_constant_shift_is_the_article_theta_plus_c():
    config = make_config(**SIZES, shift="constant", shift_scale=1.0)
    original, shifted = make_tasks(config)
    assert torch.equal(shifted.theta, original.theta + 1)


def test_shift_sizes_are_comparable_across_kinds():
    # every kind's entries have variance about c^2, so "Shift size" means the same on each
    for shift in ("constant", "low_rank", "full_rank"):
        config = make_config(d_in=200, d_out=200, hidden=20, n_samples=8, n_eval=8, shift=shift, shift_rank=5,
                             shift_scale=3.0)
        delta = shift_matrix(config, torch.Generator().manual_seed(1), torch.float64)
        assert (delta**2).mean().item() == pytest.approx(9.0, rel=0.15)


def test_held_out_samples_differ_from_training_samples():
    original, _ = make_tasks(make_config(**SIZES))
    assert original.train.x.shape == (64, 30) and original.eval.x.shape == (32, 30)
    assert not torch.allclose(original.train.x[:32], original.eval.x)
