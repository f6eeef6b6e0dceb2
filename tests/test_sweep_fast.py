"""The sweep's batched fast path (lora_core/training/fast_batched.py): each member is its single fast run, padding
stays zero, a diverging member stops alone, cancellation stops the batch, and the estimate covers its buffers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_core.experiment import finetune, prepared, run_experiment
from lora_core.settings.config import preset
from lora_core.settings.dynamics_cost import batch_dynamics_bytes, dynamics_bytes
from lora_core.sweep import members, request, run_sweep, sweep_estimate
from lora_core.training import fast_batched, fast_stacked
from lora_core.training.fast import base_activations
from tests.peak_memory import peak_bytes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def batch_small_layers(monkeypatch):
    """These tests' layers are small, so that they run fast; the batch is what they test."""
    monkeypatch.setattr(fast_batched, "MIN_WEIGHTS", 0)

SMALL = dict(d_in=16, hidden=16, d_out=16, n_samples=256, n_eval=300, pretrain_epochs=10, epochs=10, batch_size=32,
             device="cpu")
# rank, α and the variant of each member: mixed ranks (padded within a group), every fast-path variant
MIXED = [(1, 2.0, {}), (3, 4.0, {}), (4, 2.0, dict(use_rslora=True)), (2, 2.0, dict(init="pissa")),
         (3, 1.0, dict(init="olora")), (2, 2.0, dict(lr_ratio=16.0)), (5, 3.0, dict(init="gaussian"))]


def _members(dtype: str, **changes) -> list:
    return [preset("default", **{**SMALL, **changes}, dtype=dtype, rank=r, alpha=a, **kw) for r, a, kw in MIXED]


@pytest.mark.parametrize("group_seconds", [0.0, fast_stacked.GROUP_SECONDS])
def test_in_float64_every_member_is_its_single_fast_run_to_1e_9(monkeypatch, group_seconds):
    """With groups free every row count is a group of its own (7 members in 6 groups); at the measured cost
    these small layers pad all into one."""
    monkeypatch.setattr(fast_stacked, "GROUP_SECONDS", group_seconds)
    configs = _members("float64")
    assert fast_batched.applies(configs)
    groups = len(set(fast_batched.padded_rows(configs)))
    assert groups == (len({fast_batched.rows_of(c) for c in configs}) if group_seconds == 0 else 1)
    _, _, shifted, base = prepared(configs[0], torch.device("cpu"))
    runs = fast_batched.train_members(configs, base, shifted)
    for config, run in zip(configs, runs, strict=True):
        alone = finetune(config, base, shifted)
        assert alone.path == "fast" and run.status == alone.status == "ok" and run.path == "fast-batched"
        assert run.history.train_loss == pytest.approx(alone.history.train_loss, rel=1e-9, abs=0)
        assert run.history.eval_loss == pytest.approx(alone.history.eval_loss, rel=1e-9, abs=0)
        trained = dict(alone.model.named_parameters())
        for name, tensor in run.tensors.items():
            assert tensor.shape == trained[name].shape
            torch.testing.assert_close(tensor, trained[name].detach(), rtol=1e-9, atol=1e-12)


def test_padding_and_frozen_rows_stay_as_they_started():
    configs = _members("float64")
    _, _, shifted, base = prepared(configs[0], torch.device("cpu"))
    stack = fast_batched.Stacked(configs, base, base.layer2.weight.detach(), 8)
    assert len(stack.spans) < len(configs) and sum(fast_batched.padded_rows(configs)) == stack.N
    start = [p.clone() for p in stack.params]
    xh, e = base_activations(shifted.train, base.layer1.weight.detach(), base.layer2.weight.detach())
    for at in range(3):
        stack.step(xh[:32, :16], xh[:32, 16:], e[:32], at, 1e-2)
    for i, c in enumerate(configs):
        rows = stack.rows(i)
        keep = slice(rows.start + c.rank, rows.stop)  # frozen rows (PiSSA, OLoRA) and padding
        trained = slice(rows.start, rows.start + c.rank)
        for block, before in zip(stack.params, start, strict=True):
            assert torch.equal(block[keep], before[keep])
            assert not torch.equal(block[trained], before[trained])  # the trained rows moved


def test_in_float32_a_sweeps_members_end_where_their_single_runs_end():
    config = preset("default", **SMALL)
    sweep = run_sweep(config, ranks=(1, 4), methods=("lora", "rslora", "pissa", "olora", "loraplus"), alphas=(2.0,))
    assert {m.path for m in sweep.members} == {"fast-batched"}
    for member in sweep.members:
        alone = run_experiment(preset("default", **member.config))
        assert alone.path == "fast"
        assert member.losses["merged_on_shifted"] == pytest.approx(alone.losses["merged_on_shifted"], rel=1e-4)
        assert member.history["finetune"].eval_loss == pytest.approx(alone.history["finetune"].eval_loss, rel=1e-4)


def test_a_diverging_member_stops_as_alone_and_the_others_go_on():
    """α = 1e12 overflows float32 in the first epoch: that member stops as 'diverged' at the epoch its single run
    stops, and the others (in its padded group and in another) end where they end alone."""
    configs = [preset("default", **SMALL, rank=r, alpha=a) for r, a in ((1, 2.0), (2, 1e12), (2, 2.0), (4, 2.0))]
    assert fast_batched.padded_rows(configs)[1] == fast_batched.padded_rows(configs)[2]  # the same group
    _, _, shifted, base = prepared(configs[0], torch.device("cpu"))
    runs = fast_batched.train_members(configs, base, shifted)
    alone = [finetune(c, base, shifted) for c in configs]
    assert alone[1].status == "diverged" and runs[1].status == "diverged"
    assert len(runs[1].history.eval_loss) == len(alone[1].history.eval_loss) < configs[1].epochs
    for i in (0, 2, 3):
        assert runs[i].status == alone[i].status == "ok"
        assert runs[i].history.eval_loss == pytest.approx(alone[i].history.eval_loss, rel=1e-5)
    sweep = run_sweep(configs[0], ranks=(2,), methods=("lora",), alphas=(2.0, 1e12))
    assert [m.status for m in sweep.members] == ["ok", "diverged"]
    assert sweep.members[1].path == "fast-batched" and "diverged" in sweep.members[1].message


def test_a_batch_stops_within_a_step_when_cancelled_and_keeps_no_unfinished_member():
    seen = []
    sweep = run_sweep(preset("default", **SMALL), ranks=(1, 2, 3), methods=("lora",), on_progress=seen.append,
                      cancel=lambda: any(p.member == 1 and p.progress.epoch == 3 for p in seen))
    assert sweep.status == "cancelled" and sweep.members == []
    epochs = [p.progress.epoch for p in seen if p.progress.phase == "finetune"]
    assert max(epochs) == 3 and {p.member for p in seen} == {0, 1, 2}  # every member reported its epochs


def test_progress_comes_once_per_member_and_epoch():
    seen = []
    sweep = run_sweep(preset("default", **SMALL), ranks=(1, 2), methods=("lora", "pissa"), on_progress=seen.append)
    finetune_epochs = {(p.member, p.progress.epoch) for p in seen if p.progress.phase == "finetune"}
    assert len(finetune_epochs) == len([p for p in seen if p.progress.phase == "finetune"]) == 4 * SMALL["epochs"]
    assert all(m.path == "fast-batched" and m.timings["finetune_s"] > 0 for m in sweep.members)


def test_the_sweep_estimate_covers_the_batched_fast_path():
    """Twelve wide members (PiSSA's and OLoRA's at twice their rank) train at once: their buffers are counted, and
    what recording their dynamics holds at an epoch's record (measured as the sweep's peak with the recording
    against the same sweep's without it)."""
    settings = dict(d_in=400, hidden=400, d_out=400, n_samples=2000, n_eval=500, pretrain_epochs=1, epochs=1)
    peaks = peak_bytes({"sweep": ("sweep", settings), "unrecorded": ("unrecorded sweep", settings)})
    measured, unrecorded = peaks["sweep"][0], peaks["unrecorded"][0]
    req = request(preset("default", **settings), ranks=(100, 150, 200), methods=("lora", "rslora", "pissa", "olora"))
    configs = [c for _, c in members(req)]
    expected = sweep_estimate(req).bytes
    assert fast_batched.batch_bytes(configs) > 0.3 * expected  # the batch is most of it here
    widths = [fast_batched.rows_of(c) for c in configs]
    recording = dynamics_bytes(configs[0]) + batch_dynamics_bytes(configs[0], widths)
    print(f"sweep: measured {measured / 2**20:.0f} MiB ({(measured - unrecorded) / 2**20:.0f} MiB of it recording "
          f"the dynamics), estimated {expected / 2**20:.0f} MiB ({recording / 2**20:.0f} MiB)")
    assert measured <= expected <= 2 * measured  # an upper bound, as the scheduler admits by it, not a wild one
    assert measured - unrecorded <= recording <= 2 * (measured - unrecorded)


def test_members_are_grouped_where_the_model_says_it_costs_least():
    """padded_rows is the cheapest cut of the sorted row counts into groups (checked against every cut), keeps
    ranks apart on wide layers and pads them together on small ones."""
    def cost(configs, rows):
        return (len(set(rows)) * fast_stacked.GROUP_SECONDS
                + sum(rows) * fast_stacked.row_seconds(configs[0]))

    for width in (16, 64, 256, 1000):
        configs = [preset("default", d_in=width, hidden=width, d_out=width, rank=r, alpha=a)
                   for r in (1, 2, 3, 8, 16) for a in (1.0, 4.0)]
        rows = fast_batched.padded_rows(configs)
        assert all(p >= fast_batched.rows_of(c) for p, c in zip(rows, configs, strict=True))
        sizes = sorted({fast_batched.rows_of(c) for c in configs})
        cheapest = float("inf")
        for mask in range(2 ** (len(sizes) - 1)):  # every cut of the sorted sizes into consecutive groups
            tops = [s for k, s in enumerate(sizes) if k == len(sizes) - 1 or mask >> k & 1]
            padded = [min(t for t in tops if t >= fast_batched.rows_of(c)) for c in configs]
            cheapest = min(cheapest, cost(configs, padded))
        assert cost(configs, rows) == pytest.approx(cheapest)
        if width == 16:
            assert len(set(rows)) == 1
        if width == 1000:
            assert len(set(rows)) == len(sizes)
