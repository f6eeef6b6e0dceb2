"""Honest times: the scheduler learns each kind of work's measured / estimated seconds and says the next
estimates in this server's time; a kept base and a sweep's shared bases are not counted as pretraining again."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from lora_core.experiment import base_cached, run_experiment
from lora_core.serving.calibration import BOUNDS, WEIGHT, Calibration
from lora_core.serving.scheduler import Scheduler
from lora_core.serving.work import work_kind
from lora_core.settings.budget import Estimate, estimate
from lora_core.settings.config import preset
from lora_core.sweep import members, request, sweep_estimate
from lora_core.training import batched, fast_batched
from tests.test_scheduler import GUARD_S, TINY


def test_the_ratio_follows_the_last_jobs_and_an_unseen_kind_takes_the_overall_one():
    c = Calibration()
    assert c.seconds("run:linear", 8.0) == 8.0  # nothing seen: the raw estimate
    c.observe("run:linear", estimated=8.0, measured=2.0)
    assert c.seconds("run:linear", 8.0) == pytest.approx(2.0)
    c.observe("run:linear", estimated=8.0, measured=8.0)  # geometric running mean of 1/4 and 1
    assert c.ratio("run:linear") == pytest.approx(math.exp((1 - WEIGHT) * math.log(0.25)))
    assert c.ratio("sweep:text") == pytest.approx(c.ratio("run:linear"))  # not seen: all work's ratio
    c.observe("pretraining:text", estimated=10.0, measured=20.0)
    assert c.ratio("run:text") == pytest.approx(2.0)  # not seen: its task's
    c.observe("run:digits", estimated=1.0, measured=1e9)  # a paused process: clamped
    assert c.ratio("run:digits") == pytest.approx(BOUNDS[1])
    c.observe("run:digits", estimated=0.0, measured=1.0)  # nothing to learn from
    assert c.ratio("run:digits") == pytest.approx(BOUNDS[1])


class Clock:
    """A test's clock: a job 'takes' what its fake run says."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_scheduler_keeps_the_estimate_in_the_result_and_learns_from_it():
    clock = Clock()
    took = {0: 2.5, 1: 2.5}

    def run(config, on_progress=None, cancel=None):
        clock.now += took[config.seed]
        return SimpleNamespace(config=config.to_dict(), status="ok", estimate={})

    raw = Estimate(bytes=1, macs=1.0, seconds=10.0, steps=1)
    sched = Scheduler(run, workers=1, memory_budget=2**40, estimate=lambda c: raw, kind=lambda c: "run:linear",
                      clock=clock)
    try:
        first = sched.submit(preset("default", **TINY, seed=0), "a")
        assert first.done.wait(GUARD_S)
        assert first.result.estimate == {"seconds": 10.0, "ratio": 0.25}  # expected the raw 10 s, took 2.5
        assert sched.expected(preset("default", **TINY, seed=1)) == pytest.approx(2.5)
        second = sched.submit(preset("default", **TINY, seed=1), "a")
        assert second.expected_seconds == pytest.approx(2.5) and second.done.wait(GUARD_S)
        assert second.result.estimate["ratio"] == pytest.approx(1.0)  # calibrated: on the mark
    finally:
        sched.shutdown()


def test_a_kept_base_drops_the_pretraining_from_the_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_EXPLORER_CACHE", str(tmp_path))
    config = preset("default", **TINY, seed=4200)
    cold = estimate(config)
    assert 0 < cold.pretrain_seconds < cold.seconds
    assert not base_cached(config)
    run_experiment(config)
    assert base_cached(config) and base_cached(config.replace(rank=1))  # the same base, another adapter
    warm = estimate(config, base_cached=True)
    assert warm.seconds == pytest.approx(cold.seconds - cold.pretrain_seconds) and warm.bytes == cold.bytes


def test_a_sweep_counts_each_seeds_pretraining_once():
    req = request(preset("default", **TINY), [1, 2, 4], ["lora", "full"], [1.0, 4.0], [0, 1])
    parts = [estimate(c) for _, c in members(req)]
    per_seed = {c.seed: estimate(c).pretrain_seconds for _, c in reversed(members(req))}
    configs = [c for _, c in members(req)]
    lora = [[c for c in configs if c.seed == seed and c.method == "lora"] for seed in (0, 1)]
    assert all(fast_batched.applies(group) for group in lora)  # six LoRA members of a seed train together
    expected = (sum(p.seconds - p.pretrain_seconds - p.finetune_seconds * (c.method == "lora")
                    for c, p in zip(configs, parts, strict=True))
                + sum(fast_batched.batch_seconds(group) for group in lora) + sum(per_seed.values()))
    assert sweep_estimate(req).seconds == pytest.approx(expected)
    assert sweep_estimate(req).seconds < sum(p.seconds for p in parts)  # 14 members, two bases
    kept = sweep_estimate(req, cached=lambda c: c.seed == 0)
    assert kept.seconds == pytest.approx(expected - per_seed[0])


def test_a_batch_costs_its_own_time_not_its_members_single_fine_tunes():
    """Compare's default grid: its 24 LoRA members train as one batch (two groups), which the estimate counts as
    the batch (every step once, each member's dynamics), not as 24 fine-tunes of their own: the raw estimate
    of 4.5 s was 4.3x what the sweep took (1.05 s); the batch's model is its steps' and recorded epochs' work."""
    config = preset("default", shift="low_rank", shift_rank=4)
    req = request(config, [1, 2, 4, 8], ["lora", "rslora", "full"], [1.0, 4.0, 16.0])
    configs = [c for _, c in members(req)]
    batch = [c for c in configs if c.method == "lora"]
    assert len(batch) == 24 and fast_batched.applies(batch)
    singles = sum(estimate(c).finetune_seconds for c in batch)
    together = fast_batched.batch_seconds(batch)
    assert together < singles / 2
    full = estimate(config.replace(method="full"), base_cached=True)
    fixed = sum(estimate(c, base_cached=True).seconds - estimate(c).finetune_seconds for c in batch)
    assert sweep_estimate(req, cached=lambda c: True).seconds == pytest.approx(full.seconds + fixed + together)
    # the batch's model grows with what the batch does: more members, wider rows, more epochs
    assert fast_batched.batch_seconds(batch[:12]) < together
    assert fast_batched.batch_seconds([c.replace(epochs=60) for c in batch]) == pytest.approx(2 * together)
    wide = [c.replace(d_in=256, hidden=256, d_out=256) for c in batch]
    assert fast_batched.batch_seconds(wide) > 2 * together


def test_a_dora_batch_is_counted_at_half_its_members_fine_tunes():
    req = request(preset("default", **TINY), [1, 2, 4], ["dora"], [1.0])
    configs = [c for _, c in members(req)]
    assert batched.applies(configs) and batched.wanted(configs[0])
    singles = sum(estimate(c).finetune_seconds for c in configs)
    assert batched.batch_seconds(configs) == pytest.approx(batched.SHARE_OF_SINGLES * singles)
    parts = [estimate(c, base_cached=True) for c in configs]
    assert sweep_estimate(req, cached=lambda c: True).seconds == pytest.approx(
        sum(p.seconds - p.finetune_seconds for p in parts) + batched.batch_seconds(configs))


def test_a_run_or_a_sweep_with_its_bases_kept_is_a_kind_of_its_own():
    config = preset("default", **TINY, seed=11)
    req = request(config, ranks=(1, 2), methods=("lora",), seeds=(11, 12))
    assert (work_kind(config), work_kind(req)) == ("run:linear", "sweep:linear")
    run_experiment(config)  # seed 11's base kept; seed 12's not yet
    assert (work_kind(config), work_kind(req)) == ("run, base kept:linear", "sweep:linear")
    run_experiment(config.replace(seed=12))
    assert work_kind(req) == "sweep, base kept:linear"
