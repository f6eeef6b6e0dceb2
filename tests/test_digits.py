"""The digits task: its data against scikit-learn's loader, the split, each shift on known images, the network,
accuracy and cross-entropy against independent computations, the numbers the issue asks for, and export to PEFT."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from lora_core.adapters.peft_format import load_base_weights
from lora_core.experiment import run_experiment
from lora_core.settings.config import DIGIT_SHIFTS, ConfigError, preset
from lora_core.settings.results import ExperimentResult
from lora_core.settings.task_specs import N_IMAGES, TEST_FRACTION
from lora_core.tasks import digits
from lora_core.tasks.mlp import DigitsMLP
from lora_core.tasks.registry import kind


def test_the_data_is_scikit_learns_digits():
    from sklearn.datasets import load_digits

    reference = load_digits()
    images, labels = digits.load()
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    assert N_IMAGES == 1797  # what a config's estimate counts without reading the file
    assert torch.equal(images, torch.tensor(reference.data, dtype=torch.float64))
    assert torch.equal(labels, torch.tensor(reference.target, dtype=torch.long))


def test_the_split_is_fixed_by_the_seed_and_covers_every_image_once():
    train, held_out = digits.split_indices(0, 1797)
    assert len(held_out) == round(1797 * TEST_FRACTION) and len(train) + len(held_out) == 1797
    assert sorted(torch.cat([train, held_out]).tolist()) == list(range(1797))
    assert torch.equal(digits.split_indices(0, 1797)[1], held_out)
    assert not torch.equal(digits.split_indices(1, 1797)[1], held_out)


def test_every_split_is_scaled_the_same_way():
    original, shifted = kind(preset("digits")).make_tasks(preset("digits", digits_shift="mirrored"))
    for split in (original.train, original.eval):
        assert split.x.min() == 0.0 and split.x.max() == 1.0
    assert shifted.train.x.max() == 1.0 and shifted.eval.x.min() == 0.0


def _marked_image() -> torch.Tensor:
    """An 8 x 8 image [1, 64] with every pixel different: row r, column c holds r * 8 + c."""
    return torch.arange(64, dtype=torch.float64).view(1, 64)


def test_rotation_by_quarter_turns_equals_rot90_and_other_angles_keep_the_centre():
    image = _marked_image()
    as_grid = image.view(8, 8)
    for quarter in (1, 2, 3):
        expected = torch.rot90(as_grid, quarter).reshape(1, 64)  # counter-clockwise
        assert torch.allclose(digits.rotate(image, 90 * quarter), expected, atol=1e-9)
    # 90°: the top-right pixel (row 0, column 7) moves to the top-left
    assert digits.rotate(image, 90).view(8, 8)[0, 0] == pytest.approx(as_grid[0, 7].item())
    # a point in the middle stays near the middle: a centred blob keeps its centre of mass
    blob = torch.zeros(8, 8, dtype=torch.float64)
    blob[3:5, 3:5] = 1.0
    turned = digits.rotate(blob.reshape(1, 64), 30).view(8, 8)
    rows = torch.arange(8, dtype=torch.float64)
    assert (turned.sum(1) @ rows) / turned.sum() == pytest.approx(3.5, abs=1e-9)


def test_mirror_invert_permute_and_noise_on_a_known_image():
    image = _marked_image() / 63
    config = preset("digits")
    g = torch.Generator().manual_seed(0)
    mirrored = digits.shifted_images(image, config.replace(digits_shift="mirrored"), g).view(8, 8)
    assert torch.equal(mirrored[2], image.view(8, 8)[2].flip(0))
    assert torch.equal(digits.shifted_images(image, config.replace(digits_shift="inverted"), g), 1 - image)
    permuted = digits.shifted_images(image, config.replace(digits_shift="permuted"), g)
    assert sorted(permuted.flatten().tolist()) == sorted(image.flatten().tolist())
    assert not torch.equal(permuted, image)
    assert torch.equal(digits.pixel_order(0), digits.pixel_order(0))
    many = image.expand(2000, 64)
    noised = digits.shifted_images(many, config.replace(digits_shift="noised", noise=0.4), g)
    assert (noised - many).std().item() == pytest.approx(0.4, rel=0.02)
    assert abs((noised - many).mean().item()) < 0.01


def test_held_out_classes_are_missing_from_pretraining_and_added_for_fine_tuning():
    config = preset("digits", digits_shift="held_out", held_out=3)
    original, shifted = kind(config).make_tasks(config)
    assert set(original.train.y.tolist()) == set(range(7)) and set(original.eval.y.tolist()) == set(range(7))
    assert set(shifted.train.y.tolist()) == set(range(10))
    # the images themselves are unchanged: the rows of the kept classes are the original split's
    assert torch.equal(shifted.eval.x[shifted.eval.y < 7], original.eval.x)


def test_a_shift_that_leaves_nothing_to_pretrain_on_is_refused_with_a_clear_message():
    with pytest.raises(ConfigError, match="held_out must be an integer from 1 to 9"):
        preset("digits", digits_shift="held_out", held_out=10)
    with pytest.raises(ConfigError, match="rank must be from 1 to 10"):
        preset("digits", rank=11)  # the output layer has 10 rows
    assert preset("digits", rank=40, layers="1,2").rank == 40  # without the output layer, up to min(64, hidden)
    with pytest.raises(ConfigError, match="path 'fast' applies only to the linear task"):
        preset("digits", path="fast")
    # the linear task's settings do not matter here, so they cannot refuse a digits run
    assert preset("digits", shift="low_rank", shift_rank=8, d_in=2).task == "digits"
    with pytest.raises(ConfigError, match="shift_rank must be from 1 to 2"):
        preset("default", shift="low_rank", shift_rank=8, d_in=2)


def test_the_network_is_64_hidden_hidden_10_with_relu():
    model = DigitsMLP(64, 32, 10, torch.Generator().manual_seed(0))
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    h = torch.relu(model.layer2(torch.relu(model.layer1(x))))
    assert torch.equal(model(x), model.layer3(h))
    assert [tuple(p.shape) for p in model.parameters()] == [(32, 64), (32,), (32, 32), (32,), (10, 32), (10,)]


@pytest.fixture(scope="module")
def default_run():
    """The default digits preset (a 90° rotation, LoRA r = 2 on all three layers), its models kept."""
    kept = {}

    def keep(result, base, tuned, merged):
        kept.update(base=base, tuned=tuned, merged=merged)

    result = run_experiment(preset("digits"), inspect=keep)
    return result, kept


def test_the_default_digits_run_reaches_the_issues_numbers(default_run):
    result, _ = default_run
    a = result.accuracies
    assert result.status == "ok" and result.path == "autograd"
    assert a["base_on_original"] >= 0.95  # pretraining learned the digits
    assert a["base_on_shifted"] < 0.3  # a 90° rotation defeats the base
    assert a["merged_on_shifted"] >= 0.85  # LoRA with r = 2 recovers most of it
    assert a["merged_on_shifted"] == a["adapter_on_shifted"] and result.merge_max_abs_diff < 1e-4
    assert len(result.history["finetune"].eval_accuracy) == result.config["epochs"]
    assert result.history["finetune"].eval_accuracy[-1] == pytest.approx(a["adapter_on_shifted"])
    assert list(result.spectra) == ["layer1", "layer2", "layer3"] and result.floor is None
    assert not result.shift_spectrum  # the digits' shift is no matrix


def test_accuracy_and_cross_entropy_match_an_independent_computation(default_run):
    result, models = default_run
    config = preset("digits")
    _, shifted = kind(config).make_tasks(config)
    with torch.no_grad():
        logits = models["merged"](shifted.eval.x)
        log_p = logits - logits.exp().sum(1, keepdim=True).log()
        expected_loss = -log_p[torch.arange(len(shifted.eval.y)), shifted.eval.y].mean().item()
        right = sum(int(row.argmax()) == int(y) for row, y in zip(logits, shifted.eval.y, strict=True))
    assert result.losses["merged_on_shifted"] == pytest.approx(expected_loss, rel=1e-5)
    assert result.accuracies["merged_on_shifted"] == right / len(shifted.eval.y)
    assert F.cross_entropy(logits, shifted.eval.y).item() == pytest.approx(expected_loss, rel=1e-5)


def test_the_samples_show_one_digit_of_each_class_with_both_predictions(default_run):
    result, models = default_run
    assert len(result.samples) == 12 and [s["label"] for s in result.samples[:10]] == list(range(10))
    config = preset("digits")
    images = torch.tensor([s["shifted"] for s in result.samples], dtype=torch.float32)
    with torch.no_grad():
        assert [s["adapted"] for s in result.samples] == models["merged"](images).argmax(1).tolist()
        assert [s["base"] for s in result.samples] == models["base"](images).argmax(1).tolist()
    first = torch.tensor(result.samples[0]["original"], dtype=torch.float64).view(1, 64)
    assert torch.allclose(digits.shifted_images(first, config, None), torch.tensor([result.samples[0]["shifted"]],
                                                                                   dtype=torch.float64), atol=2e-3)


def test_the_result_round_trips_through_json_and_the_cache_replays_accuracy(default_run):
    result, _ = default_run
    again = ExperimentResult.from_json(result.to_json())
    assert again.accuracies == result.accuracies and again.samples == result.samples
    assert json.loads(result.to_json())["accuracies"]["base_on_shifted"] == result.accuracies["base_on_shifted"]
    second = run_experiment(preset("digits", rank=4, alpha=4.0))
    assert second.pretrain_cached
    assert second.history["pretrain"].eval_accuracy == result.history["pretrain"].eval_accuracy
    assert second.accuracies["base_on_original"] == result.accuracies["base_on_original"]


def test_full_fine_tuning_and_a_subset_of_layers():
    full = run_experiment(preset("digits", method="full"))
    assert full.accuracies["merged_on_shifted"] >= 0.9 and full.merge_max_abs_diff is None
    assert full.params.full_trainable == sum(i * o + o for i, o in ((64, 64), (64, 64), (64, 10)))
    last = run_experiment(preset("digits", layers="3", rank=2))
    assert list(last.spectra) == ["layer3"] and last.params.lora_trainable == (64 + 10) * 2
    assert all(len(s.delta_factored) == 2 for s in last.spectra.values())


def test_every_shift_runs_and_lowers_the_bases_accuracy():
    for shift in DIGIT_SHIFTS:
        result = run_experiment(preset("digits", digits_shift=shift, epochs=3))
        assert result.status == "ok", shift
        assert result.accuracies["base_on_shifted"] < result.accuracies["base_on_original"] - 0.1, shift
        assert math.isfinite(result.losses["merged_on_shifted"])


def test_a_digits_adapter_loads_in_peft_and_gives_the_same_outputs(tmp_path, default_run):
    peft = pytest.importorskip("peft")
    config = preset("digits", use_rslora=True, epochs=3)
    kept = {}
    run_experiment(config, save_adapter_to=tmp_path, inspect=lambda r, b, t, m: kept.update(merged=m))
    model = DigitsMLP(64, config.hidden, 10)
    model.load_state_dict(load_base_weights(tmp_path))
    loaded = peft.PeftModel.from_pretrained(model, str(tmp_path))
    x = kind(config).make_tasks(config)[1].eval.x
    with torch.no_grad():
        assert torch.allclose(loaded(x), kept["merged"](x), atol=1e-4)


def test_a_digits_run_cancels_within_its_epoch_and_keeps_its_accuracy_history():
    seen = []

    def stop_at_third_fine_tune_epoch(p):
        seen.append(p)
        return not (p.phase == "finetune" and p.epoch == 3)

    result = run_experiment(preset("digits", seed=5, pretrain_epochs=4), on_progress=stop_at_third_fine_tune_epoch)
    assert result.status == "cancelled" and "cancelled during fine-tuning" in result.message
    fine = result.history["finetune"]
    assert len(fine.eval_loss) == len(fine.eval_accuracy) == 3
    assert all(p.eval_accuracy is not None and 0 <= p.eval_accuracy <= 1 for p in seen)
