"""See it learn: what fine-tuning records after every epoch (ΔW's singular values, the residual, the share of
each of the shift's directions learned) checked against dense computations, across paths, and the theory it
shows: plain gradient descent learns the shift's directions one at a time, largest first, the time to learn a
direction of strength σ growing like 1/σ (Saxe, McClelland & Ganguli 2014)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lora_core.adapters.attach import adapted
from lora_core.experiment import finetune, pretrain, run_experiment
from lora_core.measure.dynamics import Dynamics, half_learned_epochs
from lora_core.measure.top_values import EXACT_MAX_ELEMENTS, top_singular_values
from lora_core.settings.config import ConfigError, preset
from lora_core.settings.results import ExperimentResult, records_dynamics
from lora_core.sweep import run_sweep
from lora_core.tasks.linear import make_tasks, shift_delta
from lora_core.training.loop import batches, shuffle_generator

SMALL = dict(d_in=12, hidden=10, d_out=9, n_samples=256, n_eval=64, pretrain_epochs=20, epochs=12, batch_size=32,
             shift="graded", shift_rank=3, rank=2, alpha=2.0, device="cpu", dtype="float64")


def test_the_recorded_spectra_are_those_of_the_merged_delta_w_at_the_end():
    result = run_experiment(preset("default", **{**SMALL, "dtype": "float32"}))
    history = result.history["finetune"]
    assert history.spectra_epochs == list(range(1, SMALL["epochs"] + 1))
    for name, spectra in result.spectra.items():  # delta_merged: a dense SVD of W_merged − W after the run
        last = history.delta_spectra[name][-1]
        assert last == pytest.approx(spectra.delta_merged[:len(last)], rel=1e-4, abs=1e-5 * spectra.delta_merged[0])


def test_the_record_of_an_epoch_is_a_dense_svd_of_that_epochs_model():
    """Epoch 5 of a 12-epoch run is where a 5-epoch run ends (the same batches): its merged ΔW, densely."""
    config = preset("default", **SMALL)
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, "cpu")
    short = finetune(config.replace(epochs=5), base, shifted)
    long = finetune(config, base, shifted)
    for name in ("layer1", "layer2"):
        layer = short.model.get_submodule(name)
        dense = torch.linalg.svdvals(layer.delta_weight() + layer.base.weight - base.get_submodule(name).weight)
        assert long.history.delta_spectra[name][4] == pytest.approx(dense[:2].tolist(), rel=1e-9)
    # end to end: the residual is what θ'ᵀ − W2'W1' still misses, the learned share uᵢᵀ ΔM vᵢ / σᵢ
    w1 = short.model.layer1.base.weight + short.model.layer1.delta_weight()
    w2 = short.model.layer2.base.weight + short.model.layer2.delta_weight()
    missing = shifted.theta.T - w2 @ w1
    assert long.history.residual_spectra[4] == pytest.approx(torch.linalg.svdvals(missing)[:8].tolist(), rel=1e-9)
    u, s, vh = torch.linalg.svd(shift_delta(config).T)
    change = w2 @ w1 - base.layer2.weight @ base.layer1.weight
    learned = [(u[:, i] @ change @ vh[i] / s[i]).item() for i in range(3)]
    assert long.history.modes_learned[4] == pytest.approx(learned, rel=1e-9)


@pytest.mark.parametrize("settings", [dict(), dict(init="pissa"), dict(lr_ratio=4.0), dict(optimizer="sgd", lr=0.05)])
def test_the_fast_path_records_what_the_autograd_path_records(settings):
    fast = run_experiment(preset("default", **SMALL, **settings, path="fast"))
    slow = run_experiment(preset("default", **SMALL, **settings, path="autograd"))
    assert fast.path == "fast" and slow.path == "autograd"
    a, b = fast.history["finetune"], slow.history["finetune"]
    for name in ("layer1", "layer2"):
        assert torch.tensor(a.delta_spectra[name]) == pytest.approx(torch.tensor(b.delta_spectra[name]), rel=1e-7)
    assert torch.tensor(a.modes_learned) == pytest.approx(torch.tensor(b.modes_learned), rel=1e-7, abs=1e-9)


def test_full_fine_tuning_records_the_dense_change_and_digits_their_layers():
    full = run_experiment(preset("default", **SMALL, method="full"))
    history = full.history["finetune"]
    assert len(history.delta_spectra["layer1"][-1]) == 8  # W − W0 is dense: the top 8 of its 9 or 10
    assert history.delta_spectra["layer1"][-1] == pytest.approx(full.spectra["layer1"].delta_merged[:8], rel=1e-9)
    assert len(history.modes_learned[-1]) == 3 and history.modes_learned[-1][0] > 0.9
    digits = run_experiment(preset("digits", pretrain_epochs=3, epochs=2, hidden=16, rank=2, device="cpu"))
    recorded = digits.history["finetune"]
    assert set(recorded.delta_spectra) == set(digits.spectra) and recorded.residual_spectra == []
    assert recorded.modes_learned == [] and len(recorded.delta_spectra["layer2"]) == 2


def test_sgd_is_plain_gradient_descent_on_the_same_batches():
    """optimizer=sgd against a loop written here: W ← W − lr ∇W on each mini-batch, nothing else."""
    config = preset("default", **SMALL, optimizer="sgd", lr=0.05, path="autograd")
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, "cpu")
    tuned = finetune(config, base, shifted).model
    model = adapted(base, config)
    params = [p for p in model.parameters() if p.requires_grad]
    generator = shuffle_generator(config.seed, "finetune")
    for _ in range(config.epochs):
        for idx in batches(shifted.train.x.shape[0], config.batch_size, generator):
            loss = F.mse_loss(model(shifted.train.x[idx]), shifted.train.y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p -= config.lr * g
    for mine, theirs in zip(params, [p for p in tuned.parameters() if p.requires_grad], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-12, atol=1e-12)


def test_a_sweeps_members_keep_the_dynamics_of_their_single_runs():
    config = preset("default", **{**SMALL, "dtype": "float32"})
    sweep = run_sweep(config, ranks=(1, 2), methods=("lora", "dora"))
    assert {m.path for m in sweep.members} == {"fast", "batched"}  # DoRA's members train together
    for member in sweep.members:
        single = run_experiment(preset("default", **member.config))
        mine, theirs = member.history["finetune"], single.history["finetune"]
        assert mine.spectra_epochs == theirs.spectra_epochs
        assert torch.tensor(mine.delta_spectra["layer2"]) == pytest.approx(torch.tensor(theirs.delta_spectra["layer2"]),
                                                                           rel=1e-3, abs=1e-5)
    restored = ExperimentResult.from_json(sweep.members[0].to_json())
    assert restored.history["finetune"].modes_learned == sweep.members[0].history["finetune"].modes_learned


def test_long_runs_are_thinned_and_wide_matrices_get_a_randomised_top_k():
    assert [e for e in range(1, 401) if records_dynamics(e, 400)] == list(range(1, 401))
    kept = [e for e in range(1, 1001) if records_dynamics(e, 1000)]
    assert len(kept) <= 400 and kept[-1] == 1000 and kept[:2] == [3, 6]
    g = torch.Generator().manual_seed(0)  # a low-rank change and a little noise, as a shift or a fine-tune makes
    low_rank = torch.randn(600, 3, generator=g, dtype=torch.float64) @ torch.randn(3, 600, generator=g,
                                                                                     dtype=torch.float64)
    wide = low_rank + 0.01 * torch.randn(600, 600, generator=g, dtype=torch.float64)
    assert wide.numel() > EXACT_MAX_ELEMENTS
    exact = torch.linalg.svdvals(wide)
    found = top_singular_values(wide, 8)
    assert found[:3] == pytest.approx(exact[:3].tolist(), rel=1e-6)  # the values that stand apart: exact
    assert all(f <= e * (1 + 1e-9) for f, e in zip(found, exact.tolist(), strict=False))  # the rest: never above


def test_a_bad_optimizer_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"optimizer.*adam, sgd"):
        preset("default", optimizer="rmsprop")


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_descent_learns_the_directions_largest_first_in_time_like_one_over_sigma(seed):
    """The `dynamics` preset: a graded rank-3 shift (σ in ratio 4 : 2 : 1), plain SGD, r = 3 on both layers."""
    config = preset("dynamics", seed=seed, device="cpu")
    result = run_experiment(config)
    epochs = half_learned_epochs(result.history["finetune"])
    assert all(e is not None for e in epochs), epochs
    assert epochs[0] < epochs[1] < epochs[2], epochs  # largest first, one at a time
    sigma = result.shift_spectrum[:3]
    for i in (1, 2):  # the time to learn grows like 1/σ, within a factor of 2
        assert 0.5 <= (epochs[i] / epochs[0]) / (sigma[0] / sigma[i]) <= 2, (epochs, sigma)


def test_the_recorder_follows_no_shift_it_cannot_afford():
    config = preset("default", d_in=600, hidden=4, d_out=600, shift="full_rank", rank=1, n_samples=16, n_eval=8,
                    pretrain_epochs=1, epochs=1, device="cpu")
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, "cpu")
    assert Dynamics(config, base, shifted).modes is None  # a dense 600 x 600 SVD every run: not followed


@pytest.mark.parametrize("settings", [dict(), dict(init="pissa", rank=3), dict(method="full"), dict(use_dora=True)])
def test_dynamics_measured_after_the_run_equal_those_measured_live(settings):
    """A sweep's members keep their factors and measure them in one batch after the run (live_dynamics=False):
    the same numbers as measuring after every epoch."""
    config = preset("default", **{**SMALL, **settings})
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, "cpu")
    live = finetune(config, base, shifted).history
    later = finetune(config, base, shifted, live_dynamics=False).history
    assert later.spectra_epochs == live.spectra_epochs == list(range(1, SMALL["epochs"] + 1))
    for name, rows in live.delta_spectra.items():
        assert torch.tensor(later.delta_spectra[name]) == pytest.approx(torch.tensor(rows), rel=1e-9, abs=1e-12)
    assert torch.tensor(later.residual_spectra) == pytest.approx(torch.tensor(live.residual_spectra), rel=1e-9)
    assert torch.tensor(later.modes_learned) == pytest.approx(torch.tensor(live.modes_learned), rel=1e-9, abs=1e-12)


def test_a_diverging_run_measured_after_it_keeps_the_epochs_before_it():
    config = preset("default", **{**SMALL, "shift_scale": 1e18, "dtype": "float32"})
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, "cpu")
    tuned = finetune(config, base, shifted, live_dynamics=False)
    live = finetune(config, base, shifted)
    assert tuned.status == live.status == "diverged"
    history = tuned.history
    assert history.spectra_epochs == live.history.spectra_epochs  # the epochs whose factors were still finite
    assert len(history.spectra_epochs) <= len(history.train_loss) < SMALL["epochs"]
    assert all(len(rows) == len(history.spectra_epochs) for rows in history.delta_spectra.values())


def test_wide_members_measured_together_get_each_its_own_warm_started_residual():
    """Past EXACT_MAX_ELEMENTS the residual's values come from a subspace iteration warm-started epoch to epoch;
    a batch of members runs them batched, and each member's (and its ΔW's spectrum, thin or thick) must be what
    its own recorder finds alone."""
    config = preset("default", d_in=130, hidden=20, d_out=130, n_samples=64, n_eval=16, pretrain_epochs=1,
                    epochs=1, dtype="float64", device="cpu")
    assert config.d_in * config.d_out > EXACT_MAX_ELEMENTS
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, "cpu")
    g = torch.Generator().manual_seed(3)

    def factors(rank: int, size: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        return {"layer1": (size * torch.randn(20, rank, generator=g, dtype=torch.float64),
                           torch.randn(rank, 130, generator=g, dtype=torch.float64)),
                "layer2": (size * torch.randn(130, rank, generator=g, dtype=torch.float64),
                           torch.randn(rank, 20, generator=g, dtype=torch.float64))}

    # 3 members, 3 epochs; r = 12 is thick (2r >= the 20-wide side): its spectrum comes from the dense product
    epochs = [[factors(r, 0.01 * (epoch + 1)) for r in (1, 3, 12)] for epoch in range(3)]
    together = Dynamics(config, base, shifted)
    alone = [Dynamics(config, base, shifted) for _ in range(3)]
    for members in epochs:
        batch = together.record_batch(members)
        singles = [d.record_changes(m) for d, m in zip(alone, members, strict=True)]
        for got, want in zip(batch, singles, strict=True):
            assert got.residual == pytest.approx(want.residual, rel=1e-9)
            for name in ("layer1", "layer2"):
                assert len(got.delta[name]) == len(want.delta[name])
                assert got.delta[name] == pytest.approx(want.delta[name], rel=1e-9)
        assert len({round(m.residual[0], 9) for m in batch}) == 3  # each member its own, not the first's
