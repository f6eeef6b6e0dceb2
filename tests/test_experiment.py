"""The article's story end to end at reduced size, and the experiment API's contract."""

import json
import math

import pytest
import torch

from lora_core.experiment import run_experiment
from lora_core.settings.config import make_config, preset
from lora_core.settings.results import LOSS_KEYS, ExperimentResult

SMALL = dict(n_samples=512, n_eval=256, d_in=24, hidden=20, d_out=16, pretrain_epochs=30, epochs=30,
             batch_size=32, lr=1e-2, device="cpu")


@pytest.fixture(scope="module")
def story():
    return run_experiment(preset("default", rank=1, alpha=1.0, **SMALL))


def test_article_story_at_reduced_size(story):
    losses = story.losses
    assert story.status == "ok"
    assert losses["base_on_original"] < 1e-2  # pretraining learned θ
    assert losses["base_on_shifted"] > 10  # the shift hurts: about d_in for θ + 1
    assert losses["base_on_shifted"] / losses["merged_on_shifted"] > 100
    assert math.isclose(losses["adapter_on_shifted"], losses["merged_on_shifted"], rel_tol=1e-3)
    assert story.merge_max_abs_diff < 1e-4


def test_spectra_agree_before_and_after_merging(story):
    for spec in story.spectra.values():
        assert len(spec.delta_factored) == 1  # r = 1
        assert spec.delta_factored[0] == pytest.approx(spec.delta_merged[0], rel=1e-4)
        assert max(spec.delta_merged[1:]) < 1e-4 * spec.delta_merged[0]  # the merged ΔW has rank 1 too
        assert spec.delta_merged == sorted(spec.delta_merged, reverse=True)
    assert len(story.spectra["layer1"].weight_before) == 20


def test_parameter_counts_in_result(story):
    p = story.params
    assert [(layer.name, layer.lora, layer.full) for layer in p.layers] == [
        ("layer1", (24 + 20) * 1, 24 * 20), ("layer2", (20 + 16) * 1, 20 * 16)]
    assert p.lora_trainable == 44 + 36 and p.full_trainable == 480 + 320


def test_rank_matters_for_a_low_rank_shift():
    final = {}
    for rank in (1, 4):
        result = run_experiment(preset("default", rank=rank, alpha=float(rank), shift="low_rank", shift_rank=4,
                                       **SMALL))
        final[rank] = result.losses["merged_on_shifted"]
    assert final[1] > 30 * final[4]


def test_full_fine_tuning_baseline():
    result = run_experiment(preset("default", method="full", **SMALL))
    assert result.status == "ok" and result.path == "autograd"
    assert result.losses["merged_on_shifted"] < result.losses["base_on_shifted"] / 100
    assert result.spectra["layer1"].delta_factored == []
    assert result.merge_max_abs_diff is None


def test_progress_reports_every_epoch_and_can_cancel():
    seen = []
    result = run_experiment(preset("default", **SMALL), on_progress=lambda p: seen.append(p))
    assert [(p.phase, p.epoch) for p in seen] == [("pretrain", e) for e in range(1, 31)] + [
        ("finetune", e) for e in range(1, 31)]
    assert [p.eval_loss for p in seen if p.phase == "finetune"] == result.history["finetune"].eval_loss

    def stop_at_third(p):
        return not (p.phase == "finetune" and p.epoch == 3)

    cancelled = run_experiment(preset("default", **SMALL, seed=5), on_progress=stop_at_third)
    assert cancelled.status == "cancelled"
    assert len(cancelled.history["finetune"].train_loss) == 3
    assert cancelled.spectra == {} and "cancelled" in cancelled.message


def test_divergence_stops_and_keeps_history():
    # α = 1e12 makes s·B·A overflow float32 within the first epoch
    result = run_experiment(preset("default", **{**SMALL, "alpha": 1e12}))
    assert result.status == "diverged"
    assert len(result.history["pretrain"].train_loss) == 30
    history = result.history["finetune"].train_loss
    assert 1 <= len(history) < 30 and not math.isfinite(history[-1])
    assert "learning rate" in result.message and result.spectra == {}
    data = json.loads(result.to_json())  # NaN is not valid JSON: it must come out as null
    assert data["history"]["finetune"]["train_loss"][-1] is None
    assert data["losses"]["base_on_shifted"] > 1


def test_divergence_in_pretraining_stops_before_fine_tuning():
    result = run_experiment(preset("default", **{**SMALL, "lr": 1e9}))
    assert result.status == "diverged" and "pretraining diverged at epoch 1" in result.message
    assert result.history["finetune"].train_loss == [] and result.losses["base_on_shifted"] is None


def test_a_run_that_ends_worse_than_it_started_says_so():
    result = run_experiment(preset("default", **{**SMALL, "alpha": 1e8, "init": "gaussian"}))
    assert result.status == "ok"
    assert result.losses["merged_on_shifted"] > result.losses["base_on_shifted"]
    assert "higher loss" in result.message


def test_result_round_trips_through_json(story):
    data = json.loads(story.to_json())
    assert set(data["losses"]) == set(LOSS_KEYS)
    assert set(data["timings"]) == {"pretrain_s", "finetune_s", "analysis_s"}
    assert data["config"]["rank"] == 1 and data["status"] == "ok" and data["device"] == "cpu"
    again = ExperimentResult.from_json(story.to_json())
    assert again.to_dict() == story.to_dict()


def test_same_seed_same_numbers_and_the_same_base_on_any_shift():
    short = {**SMALL, "pretrain_epochs": 2, "epochs": 2}
    a = run_experiment(preset("default", **short))
    b = run_experiment(preset("default", **short))
    assert a.history["finetune"].train_loss == b.history["finetune"].train_loss
    other = run_experiment(preset("default", **short, shift="full_rank", shift_scale=3.0))
    assert other.history["pretrain"] == a.history["pretrain"]  # the shift never moves the original task
    assert other.losses["base_on_original"] == a.losses["base_on_original"]
    assert other.history["finetune"].train_loss != a.history["finetune"].train_loss


def test_tasks_use_same_data_on_cpu_regardless_of_shift():
    from lora_core.tasks.linear import make_tasks
    a, _ = make_tasks(make_config(**SMALL))
    b, shifted = make_tasks(make_config(**SMALL, shift="full_rank", shift_scale=3.0))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.theta, b.theta)
    assert not torch.equal(a.train.x, shifted.train.x)  # the shifted task has its own samples
    assert torch.allclose(shifted.train.y, shifted.train.x @ shifted.theta)
