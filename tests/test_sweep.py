"""Sweeps and the analyses that compare methods: the floor, forgetting, amplification, intruders, φ."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import subprocess
import sys

import pytest
import torch

from lora_core.adapters.attach import merge_lora
from lora_core.cli.main import main
from lora_core.experiment import finetune, pretrain, run_experiment
from lora_core.measure import analysis
from lora_core.settings.config import ConfigError, preset
from lora_core.tasks.linear import make_tasks
from lora_core.training.loop import held_out_loss as mse

SMALL = dict(d_in=16, hidden=16, d_out=16, n_samples=256, n_eval=512, pretrain_epochs=10, epochs=10, batch_size=32,
             device="cpu")


# ---- the floor ----------------------------------------------------------------------------------------------

def test_a_constructed_optimal_rank_r_change_reaches_the_floor():
    """ΔW1 = W2⁻¹ E_a and ΔW2 = E_b (W1 + ΔW1)⁻¹, with E_a + E_b the best rank-2r part of the map's error, give
    rank-r changes of each layer whose product misses exactly the floor."""
    config = preset("default", **SMALL, shift="low_rank", shift_rank=6, rank=2, dtype="float64")
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, torch.device("cpu"))
    w1, w2 = base.layer1.weight.detach(), base.layer2.weight.detach()
    error = analysis.end_to_end_error(w1, w2, shifted.theta)
    u, s, vh = torch.linalg.svd(error)
    r = config.rank
    e_a = (u[:, :r] * s[:r]) @ vh[:r]
    e_b = (u[:, r:2 * r] * s[r:2 * r]) @ vh[r:2 * r]
    d1 = torch.linalg.solve(w2, e_a)
    d2 = e_b @ torch.linalg.inv(w1 + d1)
    assert torch.linalg.matrix_rank(d1) == r and torch.linalg.matrix_rank(d2) == r
    model = copy.deepcopy(base)
    with torch.no_grad():
        model.layer1.weight += d1
        model.layer2.weight += d2
    floor = analysis.loss_floor(s.tolist(), 2 * r, config.d_out)
    population = ((shifted.theta.T - model.layer2.weight @ model.layer1.weight) ** 2).sum().item() / config.d_out
    assert population == pytest.approx(floor, rel=1e-8)
    noise = analysis.floor_noise(s.tolist(), 2 * r, config.d_out, config.n_eval)
    assert abs(mse(model, shifted.eval) - floor) < 4 * noise
    # and the run reports that floor
    assert run_experiment(config).floor == pytest.approx(floor, rel=1e-6)


def test_no_trained_adapter_ends_below_its_floor_beyond_the_held_out_noise():
    from lora_core.sweep import run_sweep

    config = preset("default", **{**SMALL, "epochs": 40}, shift="low_rank", shift_rank=4)
    sweep = run_sweep(config, ranks=(1, 2, 3), methods=("lora", "rslora", "pissa", "loraplus", "full"))
    assert len(sweep.members) == 13
    for member in sweep.members:
        assert member.floor is not None
        assert member.losses["merged_on_shifted"] >= member.floor - 4 * member.floor_noise
    r1 = next(m for m in sweep.members if m.config["rank"] == 1 and not m.config["use_rslora"]
              and m.config["method"] == "lora" and m.config["init"] == "kaiming" and m.config["lr_ratio"] == 1)
    # a rank-4 shift: r = 1 cannot get below its floor, and ends within a quarter above it; from r = 2 the floor
    # is only what the short pretraining left (the shift is within reach from r = ⌈s/2⌉)
    assert r1.floor <= r1.losses["merged_on_shifted"] <= 1.25 * r1.floor
    floors = {m.config["rank"]: m.floor for m, name in zip(sweep.members, sweep.methods, strict=True)
              if name == "lora"}
    assert floors[2] < 0.2 * floors[1] and floors[3] <= floors[2]
    assert next(m for m in sweep.members if m.config["method"] == "full").floor == 0.0


def test_forgetting_is_the_merged_model_on_the_original_tasks_held_out_data():
    config = preset("default", **SMALL)
    result = run_experiment(config)
    original, shifted = make_tasks(config)
    _, _, base = pretrain(config, original, torch.device("cpu"))
    merged = merge_lora(finetune(config, base, shifted).model)
    assert result.losses["merged_on_original"] == pytest.approx(mse(merged, original.eval), rel=1e-6)
    assert result.losses["merged_on_original"] > result.losses["base_on_original"]  # it did forget


# ---- amplification, intruders, φ --------------------------------------------------------------------------

def test_amplification_factor_from_its_definition_and_from_the_factors():
    g = torch.Generator().manual_seed(0)
    w = torch.diag(torch.tensor([10.0, 5.0, 1.0, 0.1], dtype=torch.float64))
    # ΔW along e3 e4ᵀ: W's entry there is 0 after projection? Uᵀ W V = w[2, 3] = 0 -> use a direction W carries
    delta = 3.0 * torch.outer(torch.eye(4, dtype=torch.float64)[2], torch.eye(4, dtype=torch.float64)[2])
    assert analysis.amplification_factor(delta, w, 1) == pytest.approx(3.0 / 1.0)
    b, a = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(6, 5, generator=g, dtype=torch.float64)
    dense = analysis.amplification_factor(0.7 * b @ a, weight, 2)
    assert analysis.factored_amplification(b, a, 0.7, weight, 2) == pytest.approx(dense, rel=1e-9)


def test_intruder_dimensions_count_new_directions_only():
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=g, dtype=torch.float64))
    base = q[:, :10] @ torch.diag(torch.linspace(10, 1, 10, dtype=torch.float64)) @ q[:, 10:20].T  # rank 10
    assert analysis.intruder_dimensions(base, base) == 0
    assert analysis.intruder_dimensions(base, 1.01 * base) == 0
    spike = 50.0 * torch.outer(q[:, 15], q[:, 3])  # a new left direction, far from all of base's used ones
    # base's left vectors span all of R^20 (the SVD completes them), so the new one must be compared with them
    # all: it aligns with one of the unused ones only by chance
    count = analysis.intruder_dimensions(base, base + spike, k=1)
    best = (analysis.left_vectors(base + spike)[:, :1].T @ analysis.left_vectors(base)).abs().max().item()
    assert count == (1 if best < 0.5 else 0)


def test_subspace_similarity_grid_matches_its_definition():
    g = torch.Generator().manual_seed(2)
    a1, a2 = torch.randn(3, 12, generator=g), torch.randn(5, 12, generator=g)
    grid = analysis.similarity_grid(a1, a2)
    assert len(grid) == 3 and len(grid[0]) == 5
    for i in range(1, 4):
        for j in range(1, 6):
            assert grid[i - 1][j - 1] == pytest.approx(analysis.subspace_similarity(a1, a2, i, j), abs=1e-12)
    same = analysis.similarity_grid(a1, a1)
    assert all(same[i][i] == pytest.approx(1.0) for i in range(3))
    orthogonal = torch.zeros(2, 12)
    orthogonal[0, 0], orthogonal[1, 1] = 1.0, 1.0
    other = torch.zeros(2, 12)
    other[0, 5], other[1, 6] = 2.0, 1.0
    assert analysis.subspace_similarity(orthogonal, other, 2, 2) == pytest.approx(0.0)


# ---- the engine -----------------------------------------------------------------------------------------------

def test_every_member_is_its_single_run():
    from lora_core.sweep import member_name, run_sweep

    config = preset("default", **SMALL)
    sweep = run_sweep(config, ranks=(2, 4), methods=("lora", "rslora", "dora", "pissa", "loraplus", "full"),
                      alphas=(1.0, 4.0))
    assert len(sweep.members) == 5 * 2 * 2 + 1
    for method, member in list(zip(sweep.methods, sweep.members, strict=True))[::3]:
        single = run_experiment(preset("default", **{**member.config}))
        name = member_name(method, member.config)
        assert member.losses["merged_on_shifted"] == pytest.approx(single.losses["merged_on_shifted"],
                                                                    rel=1e-4), name
        assert member.history["finetune"].eval_loss == pytest.approx(single.history["finetune"].eval_loss,
                                                                      rel=1e-4), name
    assert sweep.timings["total_s"] > 0


def test_the_sweep_is_json_with_what_each_member_needs_and_similarities():
    from lora_core.sweep import run_sweep

    sweep = run_sweep(preset("default", **SMALL), ranks=(1, 4), methods=("lora",), seeds=(0, 1))
    data = json.loads(sweep.to_json())
    assert data["grid"] == {"ranks": [1, 4], "methods": ["lora"], "alphas": [2.0], "seeds": [0, 1]}
    member = data["members"][0]
    assert member["name"] == "lora r=1 α=2 seed 0" and member["method"] == "lora"
    assert {"config", "history", "losses", "spectra", "floor", "amplification", "intruders"} <= set(member)
    assert set(member["amplification"]) == set(member["intruders"]) == {"layer1", "layer2"}
    pairs = {(s["a"], s["b"]) for s in data["similarity"]}
    assert ("lora r=1 α=2 seed 0", "lora r=4 α=2 seed 0") in pairs  # two ranks
    assert ("lora r=4 α=2 seed 0", "lora r=4 α=2 seed 1") in pairs  # two seeds
    between_ranks = next(s for s in data["similarity"] if s["b"] == "lora r=4 α=2 seed 0")
    assert len(between_ranks["values"]) == 1 and len(between_ranks["values"][0]) == 4
    assert all(0.0 <= v <= 1.0 + 1e-9 for row in between_ranks["values"] for v in row)


def test_a_sweep_stops_when_cancelled_and_keeps_what_finished():
    from lora_core.sweep import run_sweep

    seen = []

    def on_progress(p):
        seen.append(p)

    # members that run one after another (one full fine-tune per seed); a batch's cancellation:
    # tests/test_sweep_fast.py
    sweep = run_sweep(preset("default", **SMALL), ranks=(1,), methods=("full",), seeds=(0, 1, 2),
                      on_progress=on_progress, cancel=lambda: any(p.member == 1 for p in seen))
    assert sweep.status == "cancelled" and len(sweep.members) == 1
    assert seen[0].members == 3 and seen[-1].member == 1


def test_a_bad_grid_is_refused_before_any_work():
    from lora_core.sweep import request

    with pytest.raises(ConfigError, match="unknown method"):
        request(preset("default"), ranks=(1,), methods=("lora", "magic"))
    with pytest.raises(ConfigError, match="r=99"):
        request(preset("default"), ranks=(1, 99), methods=("lora",))


def _sweep_cli(*args):
    return subprocess.run([sys.executable, "-m", "lora_core", "sweep", *args], capture_output=True, text=True,
                          timeout=300)


def test_sweep_command_writes_json_and_csv(tmp_path):
    small = [f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()]
    proc = _sweep_cli(*small, "--ranks", "1,2", "--methods", "lora,full", "--alphas", "1,2", "--json",
                      str(tmp_path / "s.json"), "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["name"] for r in rows] == ["lora r=1 α=1 seed 0", "lora r=1 α=2 seed 0", "lora r=2 α=1 seed 0",
                                         "lora r=2 α=2 seed 0", "full seed 0"]
    data = json.loads((tmp_path / "s.json").read_text())
    assert [m["losses"]["merged_on_shifted"] for m in data["members"]] == pytest.approx(
        [float(r["merged_on_shifted"]) for r in rows])
    assert all(math.isfinite(float(r["floor"])) for r in rows)
    assert "member 5/5 fine-tuned" in proc.stderr


@pytest.mark.parametrize("args, words", [(["--ranks", "1,x"], "--ranks must be"), (["--methods", "magic"],
                                         "unknown method"), (["--ranks", "100"], "rank must be"),
                                         (["--alphas", "nan,1"], "alpha must be"), (["--json", "/no/such/dir/x"],
                                         "cannot write there")])
def test_sweep_command_refuses_bad_input_with_one_line(args, words, capsys):
    """In this process (a real process's one-line errors: test_cli.py); the exit status is what `main` returns."""
    code = main(["sweep", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_batched_members_follow_their_single_runs_and_the_padding_stays_zero():
    """DoRA members of ranks 1 and 4 in one batch (the rank-1 one padded to 4): each ends where it ends alone."""
    import torch

    from lora_core.experiment import prepared
    from lora_core.training import batched

    configs = [preset("default", **SMALL, use_dora=True, rank=r, alpha=a, lr_ratio=q)
               for r, a, q in ((1, 2.0, 1.0), (4, 8.0, 1.0), (2, 2.0, 4.0))]
    assert batched.applies(configs) and all(batched.wanted(c) for c in configs)
    _, _, shifted, base = prepared(configs[0], torch.device("cpu"))
    runs = batched.train_members(configs, base, shifted)
    for config, run in zip(configs, runs, strict=True):
        alone = run_experiment(config)
        assert run.status == "ok" and run.tensors["layer1.lora_A"].shape[0] == config.rank
        assert run.history.eval_loss == pytest.approx(alone.history["finetune"].eval_loss, rel=1e-4)
        member = run_experiment(config, trained=run)
        assert member.path == "batched"
        assert member.losses["merged_on_shifted"] == pytest.approx(alone.losses["merged_on_shifted"], rel=1e-4)
