"""The fast fine-tuning path against the general autograd path: same gradients, same trajectory, same rules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from lora_core.adapters.attach import add_lora, merge_lora
from lora_core.experiment import finetune, pretrain, run_experiment
from lora_core.settings.config import ConfigError, preset
from lora_core.tasks.data import rng
from lora_core.tasks.linear import make_tasks
from lora_core.tasks.linear_model import TARGETS, TwoLayerLinear
from lora_core.training import fast
from lora_core.training.loop import batches, train
from lora_core.training.optimizers import FlatAdam
from lora_core.training.trainers import choose_path

SMALL = dict(n_samples=300, n_eval=70, d_in=13, hidden=11, d_out=9, pretrain_epochs=5, epochs=6, batch_size=32,
             lr=1e-2, device="cpu")


def setup(dtype="float64", **overrides):
    config = preset("default", **{**SMALL, "dtype": dtype, **overrides})
    original, shifted = make_tasks(config, "cpu")
    _, _, base = pretrain(config, original, torch.device("cpu"))
    return config, base, shifted


def adapted(config, base):
    model = copy.deepcopy(base)
    add_lora(model, TARGETS, config.rank, config.alpha, config.init, rng(config.seed, "adapter"))
    return model


def run_both(config, base, task, on_progress=None):
    """(status, history, model) from training.train and from fast.train_fast, from the same adapted base."""
    kwargs = dict(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                  phase="finetune", on_progress=on_progress)
    out = []
    for trainer in (train, fast.train_fast):
        model = adapted(config, base)
        status, history = trainer(model, task.train, task.eval, **kwargs)
        out.append((status, history, model))
    return out


def max_rel(a, b):
    return max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("rank", [1, 2, 3, 9])
@pytest.mark.parametrize("init", ["gaussian", "kaiming"])
def test_same_trajectory_in_float64(rank, init):
    config, base, task = setup(rank=rank, alpha=2.0, init=init)
    (s1, h1, m1), (s2, h2, m2) = run_both(config, base, task)
    assert s1 == s2 == "ok"
    assert len(h2.train_loss) == len(h2.eval_loss) == config.epochs
    assert max_rel(h1.train_loss, h2.train_loss) < 1e-9  # the brief allows 1e-4; float64 gives far better
    assert max_rel(h1.eval_loss, h2.eval_loss) < 1e-9
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):  # factors written back, base untouched
        torch.testing.assert_close(p1, p2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rank", [1, 4])
def test_same_trajectory_in_float32(rank):
    config, base, task = setup("float32", rank=rank, alpha=1.0, init="gaussian", epochs=10)
    (_, h1, _), (_, h2, _) = run_both(config, base, task)
    assert max_rel(h1.train_loss, h2.train_loss) < 1e-4
    assert max_rel(h1.eval_loss, h2.eval_loss) < 1e-4


def test_uneven_batches_and_batch_larger_than_data():
    for n, batch in [(301, 32), (50, 64), (64, 1)]:
        config, base, task = setup(n_samples=n, batch_size=batch, rank=2, epochs=2)
        (_, h1, _), (_, h2, _) = run_both(config, base, task)
        assert max_rel(h1.train_loss + h1.eval_loss, h2.train_loss + h2.eval_loss) < 1e-9


def test_gradients_match_autograd():
    """One step's hand-written gradients equal autograd's on the same batch (an independent computation)."""
    config, base, task = setup(rank=3, alpha=1.5, init="gaussian")
    model = adapted(config, base)
    with torch.no_grad():  # B != 0 so that every term of every gradient is exercised
        for name in TARGETS:
            model.get_submodule(name).lora_B.normal_(generator=torch.Generator().manual_seed(7))
    state = fast.FastLoRA(copy.deepcopy(model), task.train, task.eval)
    idx = torch.arange(5, 45)
    loss = F.mse_loss(model(task.train.x[idx]), task.train.y[idx])
    loss.backward()
    squares = state.step(idx, lr=1e-3)
    assert squares.item() / task.train.y[idx].numel() == pytest.approx(loss.item(), rel=1e-12)
    l1, l2 = model.layer1, model.layer2
    for mine, reference in [(state.gA1, l1.lora_A.grad), (state.gB1t.T, l1.lora_B.grad),
                            (state.gA2, l2.lora_A.grad), (state.gB2t.T, l2.lora_B.grad)]:
        torch.testing.assert_close(mine, reference, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adam_matches_torch_optim_adam(dtype):
    params = torch.randn(50, dtype=dtype)
    reference = params.clone().requires_grad_(True)
    opt = torch.optim.Adam([reference], lr=3e-2)
    adam = FlatAdam(params, torch.empty_like(params))
    for step in range(20):
        grad = torch.randn(50, dtype=dtype, generator=torch.Generator().manual_seed(step))
        adam.grads.copy_(grad)
        adam.step(3e-2)
        reference.grad = grad.clone()
        opt.step()
    assert torch.equal(params, reference.detach())  # the same ops in the same order: bit for bit


def test_cancel_and_divergence_behave_like_autograd():
    config, base, task = setup(rank=2)

    def stop_at_three(p):
        return p.epoch < 3

    (s1, h1, _), (s2, h2, _) = run_both(config, base, task, stop_at_three)
    assert s1 == s2 == "cancelled"
    assert len(h1.train_loss) == len(h2.train_loss) == 3

    config, base, task = setup("float32", rank=2, lr=1e10, alpha=1e3)
    (s1, h1, _), (s2, h2, _) = run_both(config, base, task)
    assert s1 == s2 == "diverged"
    assert len(h1.train_loss) == len(h2.train_loss)
    assert not math.isfinite(h2.train_loss[-1]) or not math.isfinite(h2.eval_loss[-1])


def test_applies_only_to_the_two_layer_model_with_both_layers_adapted():
    base = TwoLayerLinear(6, 5, 4, torch.Generator().manual_seed(0))
    assert not fast.applies(base)
    one = copy.deepcopy(base)
    add_lora(one, ["layer1"], 2, 2.0)
    assert not fast.applies(one)
    both = copy.deepcopy(base)
    add_lora(both, TARGETS, 2, 2.0)
    assert fast.applies(both)
    both.layer1.merge()
    assert not fast.applies(both)
    assert not fast.applies(merge_lora(copy.deepcopy(one)))


def test_finetune_picks_the_path():
    config, base, task = setup(rank=2)
    assert finetune(config, base, task).path == "fast"
    assert finetune(config.replace(path="fast"), base, task).path == "fast"
    assert finetune(config.replace(path="autograd"), base, task).path == "autograd"
    assert finetune(config.replace(method="full"), base, task).path == "autograd"
    with pytest.raises(ConfigError, match="applies only to method 'lora'"):
        finetune(config.replace(method="full", path="fast"), base, task)
    assert [choose_path(config.replace(**c)) for c in (dict(), dict(path="autograd"), dict(method="full"))] == [
        "fast", "autograd", "autograd"]


def test_run_experiment_reports_the_path_and_both_paths_agree():
    config = preset("default", **{**SMALL, "dtype": "float64", "rank": 2})
    auto = run_experiment(config)
    forced = run_experiment(config.replace(path="autograd"))
    full = run_experiment(config.replace(method="full"))
    assert (auto.path, forced.path, full.path) == ("fast", "autograd", "autograd")
    assert auto.to_dict()["path"] == "fast"
    assert max_rel(auto.history["finetune"].train_loss, forced.history["finetune"].train_loss) < 1e-9
    for key in ("adapter_on_shifted", "merged_on_shifted"):
        assert auto.losses[key] == pytest.approx(forced.losses[key], rel=1e-9)
    for name in TARGETS:
        assert auto.spectra[name].delta_factored == pytest.approx(forced.spectra[name].delta_factored, rel=1e-8)


def test_an_epochs_batches_are_views_of_one_order_sliced_lazily():
    """At batch size 1 and millions of samples a list of index tensors took gigabytes (issue 19): the batches
    are now views of one permutation, the same one as before, drawn when the epoch starts."""
    n = 2_000_003
    epoch = batches(n, 1, torch.Generator().manual_seed(5))
    expected = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    assert len(epoch) == n and torch.equal(epoch.order, expected)
    first = next(iter(epoch))
    assert first.tolist() == expected[:1].tolist()
    assert first.untyped_storage().data_ptr() == epoch.order.untyped_storage().data_ptr()  # a view, no copy
    uneven = batches(10, 4, torch.Generator().manual_seed(5))
    assert [len(b) for b in uneven] == [4, 4, 2] and len(uneven) == 3
    assert torch.equal(torch.cat(list(uneven)), torch.randperm(10, generator=torch.Generator().manual_seed(5)))
