"""Every lesson's reveal is true: each lesson's real settings run here, and each claim its reveal makes is checked
against the runs' numbers (so a change that breaks a claim fails the suite). Where a lesson's point is a fact
about LoRA rather than about one run, it is checked on a second seed too."""

from __future__ import annotations

import dataclasses
import time

import pytest

from lora_core import lesson_placement
from lora_core.experiment import run_experiment
from lora_core.lessons import FOUND, LESSONS, VARIANT_CHOICES, accuracy, merged, removed
from lora_core.measure.analysis import config_param_counts
from lora_core.measure.dynamics import half_learned_epochs
from lora_core.settings.choices import METHOD_SET_LABELS
from lora_core.settings.config import make_config
from lora_core.sweep import SweepResult, run_request
from tests.artifacts import ARTIFACTS


def _run(lesson_id: str, seed: int = 0) -> SweepResult:
    req = LESSONS[lesson_id].runs()
    if seed:
        req = dataclasses.replace(req, config=req.config.replace(seed=seed), seeds=(seed,))
    return run_request(req)


@pytest.fixture(scope="module")
def results() -> dict[str, SweepResult]:
    """Each lesson's runs on its own settings; the seconds each took are reported (README), never asserted."""
    out, seconds = {}, {}
    for lesson_id in LESSONS:
        start = time.perf_counter()
        out[lesson_id] = _run(lesson_id)
        seconds[lesson_id] = round(time.perf_counter() - start, 2)
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "timings.txt").open("a") as f:
        f.write(f"lessons' runs, seconds each (bases cold unless an earlier test made them): {seconds}\n")
    return out


def _by_rank(result: SweepResult, method: str = "lora") -> dict:
    return {m.config["rank"]: m for m, name in zip(result.members, result.methods, strict=True) if name == method}


@pytest.mark.parametrize("lesson_id", list(LESSONS))
def test_every_lesson_runs_and_its_answer_is_one_of_its_choices(results, lesson_id):
    lesson, result = LESSONS[lesson_id], results[lesson_id]
    assert result.status == "ok" and all(m.status == "ok" for m in result.members)
    reveal = lesson.reveal(result)
    assert reveal.answer in lesson.choices
    assert reveal.bars and "(" in reveal.y_title  # a unit
    assert all(f"{b.value:.3g}" in [f"{v:.3g}" for v in _values(result)] for b in reveal.bars)


def _values(result: SweepResult) -> list[float]:
    """Every loss, accuracy (in percent) and epoch a direction was half learned of the members: what a bar may
    show."""
    return [v for m in result.members for v in (*m.losses.values(), *(100 * a for a in m.accuracies.values()),
                                                 *half_learned_epochs(m.history["finetune"])) if v is not None]


@pytest.mark.parametrize("seed", [0, 1])
def test_a_constant_shift_is_one_direction_and_merging_is_exact(results, seed):
    result = results["constant"] if seed == 0 else _run("constant", seed)
    runs = _by_rank(result)
    spectrum = runs[1].shift_spectrum
    assert spectrum[1] <= 1e-6 * spectrum[0]  # rank 1
    assert removed(runs[1]) > 99 and removed(runs[1]) >= max(removed(m) for m in runs.values()) - 0.1
    assert runs[1].merge_max_abs_diff < 1e-4
    reveal = LESSONS["constant"].reveal(result)
    assert reveal.answer == "r = 1"
    assert f"{merged(runs[1]):.3g}" in reveal.text and f"{removed(runs[1]):.2f} %" in reveal.text


@pytest.mark.parametrize("seed", [0, 1])
def test_two_adapted_layers_reach_rank_2r_and_training_falls_short_of_it(results, seed):
    result = results["rank"] if seed == 0 else _run("rank", seed)
    runs = _by_rank(result)
    base = runs[1].losses["base_on_shifted"]
    assert runs[1].floor > 0.1 * base  # rank 1 on both layers reaches 2 of the shift's 4 directions: not enough
    assert runs[2].floor < 1e-3 * base  # 2r = 4: the shift is reachable
    reveal = LESSONS["rank"].reveal(result)
    assert reveal.answer == "r = 2"
    assert merged(runs[2]) > 10 * runs[2].floor  # the gap the reveal speaks of
    assert ("training found it" in reveal.text) == (merged(runs[1]) <= FOUND * runs[1].floor)
    assert f"{runs[1].floor:.3g}" in reveal.text and f"{merged(runs[2]):.3g}" in reveal.text


def test_rslora_is_lora_at_rank_one_and_the_reveal_says_which_ended_lower(results):
    result = results["alpha"]
    lora, rs = _by_rank(result, "lora"), _by_rank(result, "rslora")
    assert merged(lora[1]) == merged(rs[1])  # α/√1 = α/1: the same run
    reveal = LESSONS["alpha"].reveal(result)
    a, b = merged(lora[16]), merged(rs[16])
    expected = "about the same" if abs(a - b) <= 0.05 * max(a, b) else "rsLoRA (α/√r)" if b < a else "LoRA (α/r)"
    assert reveal.answer == expected
    assert f"{a:.3g}" in reveal.text and f"{b:.3g}" in reveal.text
    assert ("here it did end lower" in reveal.text) == (b < a)


def test_forgetting_is_read_from_the_upright_digits_accuracy(results):
    result = results["forgetting"]
    lora, full = (result.members[result.methods.index(name)] for name in ("lora", "full"))
    kept_lora, kept_full = accuracy(lora, "merged_on_original"), accuracy(full, "merged_on_original")
    reveal = LESSONS["forgetting"].reveal(result)
    if abs(kept_lora - kept_full) <= 2:
        assert reveal.answer == "both forget alike"
    else:
        assert reveal.answer == ("LoRA (r = 4)" if kept_lora > kept_full else "full fine-tuning")
    assert f"{kept_lora:.1f} %" in reveal.text and f"{kept_full:.1f} %" in reveal.text
    before = accuracy(lora, "base_on_original")
    assert ("Both forget most" in reveal.text) == (max(kept_lora, kept_full) < before / 2)
    assert before > 90  # the base reads the upright digits


@pytest.mark.parametrize("seed", [0, 1])
def test_inverted_digits_need_more_than_a_low_rank_change(results, seed):
    result = results["inverted"] if seed == 0 else _run("inverted", seed)
    acc = {(name, m.config["rank"]): accuracy(m, "merged_on_shifted")
           for m, name in zip(result.members, result.methods, strict=True)}
    full = next(v for (name, _), v in acc.items() if name == "full")
    assert full > acc[("lora", 8)] + 30 and full > acc[("lora", 1)] + 30
    assert LESSONS["inverted"].reveal(result).answer == "only full fine-tuning gets there"


def test_the_variants_reveal_ranks_them_by_their_losses(results):
    result = results["variants"]
    losses = {METHOD_SET_LABELS[name]: merged(m) for m, name in zip(result.members, result.methods, strict=True)}
    reveal = LESSONS["variants"].reveal(result)
    ranked = sorted(losses, key=losses.get)
    positions = [reveal.text.index(f"{name} **{losses[name]:.3g}**") for name in ranked]
    assert positions == sorted(positions)  # in the order of their losses
    best = losses[ranked[0]]
    if losses["LoRA"] <= 1.02 * best:
        assert reveal.answer == "plain LoRA is as good as any"
    else:
        assert reveal.answer in (ranked[0], "another variant") and reveal.answer in VARIANT_CHOICES


@pytest.mark.parametrize("seed", [0, 1])
def test_directions_arrive_largest_first_and_the_reveal_quotes_their_epochs(results, seed):
    result = results["directions"] if seed == 0 else _run("directions", seed)
    member = result.members[0]
    epochs = half_learned_epochs(member.history["finetune"])
    reveal = LESSONS["directions"].reveal(result)
    assert reveal.answer == "largest first, one at a time" and epochs == sorted(epochs) and len(set(epochs)) == 3
    assert [b.value for b in reveal.bars] == epochs
    assert f"half learned at epoch {epochs[0]}, its second at epoch {epochs[1]}, its third at epoch {epochs[2]}" \
        in reveal.text
    assert f"**{epochs[2] / epochs[0]:.1f}×**" in reveal.text


def test_with_adam_the_directions_of_the_directions_lesson_all_arrive_within_a_few_epochs():
    """What the directions lesson says of Adam, on its own settings."""
    adam = run_experiment(LESSONS["directions"].runs().config.replace(optimizer="adam", rank=3))
    epochs = half_learned_epochs(adam.history["finetune"])
    assert len(epochs) == 3 and all(e is not None and e <= 5 for e in epochs), epochs


@pytest.mark.parametrize("seed", [0, 1])
def test_spreading_a_budget_over_all_six_projections_beats_q_and_v(results, seed):
    """The placement lesson: each placement at the largest rank that fits the budget, and all six beat q and v
    by more than the lesson's tie (on two seeds: the point is about where adapters go, not about one run)."""
    result = results["placement"] if seed == 0 else _run("placement", seed)
    by = {m.config["targets"]: m for m in result.members}
    assert set(by) == set(lesson_placement.PLACEMENTS)
    for config in (m.config for m in result.members):
        fits = make_config(**config)
        assert config_param_counts(fits).lora_trainable <= lesson_placement.BUDGET
        assert config_param_counts(fits.replace(rank=fits.rank + 1)).lora_trainable > lesson_placement.BUDGET
    reveal = LESSONS["placement"].reveal(result)
    few, spread = merged(by["q,v"]), merged(by["all"])
    assert spread < (1 - lesson_placement.TIE) * few and reveal.answer == lesson_placement.CHOICES[1]
    assert f"**{spread:.3f}**" in reveal.text and f"ended {few - spread:.3f} below q and v" in reveal.text
    assert [b.value for b in reveal.bars] == sorted(b.value for b in reveal.bars)
