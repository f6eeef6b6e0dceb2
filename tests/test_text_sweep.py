"""Where to put the adapters: the text task's placements as a sweep axis, and a parameter budget that gives each
placement the largest rank it can afford, in the library, the CLI and on the Compare page."""

from __future__ import annotations

import json

import pytest

from lora_core.cli.main import main
from lora_core.measure.analysis import config_param_counts, fitting_rank
from lora_core.settings.config import METHOD_SETS, ConfigError, preset
from lora_core.sweep import members, request, run_request
from lora_core.sweep_table import rows
from tests.test_app_compare import charts, compare, multiselect, run
from tests.test_text import TINY
from ui.plan_figures import TITLE as PLAN

PLACEMENTS = ["q,v", "attention", "mlp", "all"]
BUDGET = 1500


def _trainable(config) -> int:
    return config_param_counts(config).lora_trainable


def test_a_budget_gives_each_placement_the_largest_rank_that_fits():
    req = request(preset("text", **TINY), [1], ["lora"], targets=PLACEMENTS, budget=BUDGET)
    todo = [config for _, config in members(req)]
    assert [c.targets for c in todo] == PLACEMENTS
    for config in todo:
        assert _trainable(config) <= BUDGET < _trainable(config.replace(rank=config.rank + 1))
    assert fitting_rank(todo[0], BUDGET) == todo[0].rank
    assert len({c.rank for c in todo}) > 1  # wider placements afford smaller ranks


def test_placements_without_a_budget_cross_the_ranks_and_full_runs_once():
    req = request(preset("text", **TINY), [1, 2], ["lora", "full"], targets=["v,q", "mlp"])
    names = [(m, c.targets, c.rank) for m, c in members(req)]
    assert names[:4] == [("lora", "q,v", 1), ("lora", "q,v", 2), ("lora", "mlp", 1), ("lora", "mlp", 2)]
    assert len(names) == 5 and [n[0] for n in names].count("full") == 1  # full fine-tuning has no placement


def test_a_budget_too_small_or_a_placement_on_another_task_is_refused():
    with pytest.raises(ConfigError, match="even at r = 1"):
        members(request(preset("text", **TINY), [1], ["lora"], targets=["all"], budget=10))
    with pytest.raises(ConfigError, match="only to the text task"):
        request(preset("default"), [1], ["lora"], targets=["q,v"])


def test_a_budget_sweep_runs_and_its_rows_carry_placement_and_parameters():
    result = run_request(request(preset("text", **TINY), [1], ["lora"], targets=PLACEMENTS, budget=BUDGET))
    assert result.grid["targets"] == PLACEMENTS and result.grid["budget"] == BUDGET
    table = rows(result)
    assert [r["targets"] for r in table] == PLACEMENTS
    assert all(r["trainable"] <= BUDGET and r["status"] == "ok" for r in table)
    assert all(r["merged_on_shifted"] < r["base_on_shifted"] for r in table)


def test_the_cli_sweeps_placements_under_a_budget(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    code = main(["sweep", "--preset", "text", *flags, "--targets", "q,v", "fc1,fc2", "--budget", str(BUDGET),
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert [m["config"]["targets"] for m in data["members"]] == ["q,v", "fc1,fc2"]
    assert main(["sweep", "--preset", "text", "--targets", "q,w"]) == 2
    assert "comma-separated subset" in capsys.readouterr().err


def test_the_compare_page_draws_the_placements_at_one_budget():
    params = {k.replace("_", "-"): str(v) for k, v in TINY.items() if k != "device"}
    at = compare(preset="text", **params, methods="lora", alphas="8", placements=";".join(PLACEMENTS),
                 budget=str(BUDGET))
    assert multiselect(at, "Placements (target modules)").value == PLACEMENTS
    # before Run, the plan: each placement at the rank the budget buys it, under the budget's level
    plan = charts(at)[PLAN]
    planned = {c.targets: (c.rank, _trainable(c)) for _, c in members(request(
        preset("text", **TINY), [1], ["lora"], alphas=[8.0], targets=PLACEMENTS, budget=BUDGET))}
    for placement, (rank, count) in planned.items():
        line = next(t for t in plan["data"] if t["name"] == f"LoRA on {placement}")
        assert (line["x"], line["y"]) == ([rank], [count]) and count <= BUDGET
    assert next(t for t in plan["data"] if t["name"] == f"budget: {BUDGET:,}")["y"] == [BUDGET] * 2
    run(at)
    chart = charts(at)[f"At most {BUDGET:,} trainable parameters: where to put them"]
    shifted = chart["data"][0]
    result = at.session_state["lora_explorer"].sweep
    assert shifted["y"] == [m.losses["merged_on_shifted"] for m in result.members]
    assert all(f"r = {m.config['rank']}, {m.params.lora_trainable:,} params" in x
               for x, m in zip(shifted["x"], result.members, strict=True))
    best = min(result.members, key=lambda m: m.losses["merged_on_shifted"])
    assert any(f"adapters on {best.config['targets']} at r = {best.config['rank']}" in c.value for c in at.caption)


def test_the_compare_page_offers_placements_only_for_the_text_task():
    assert not [w for w in compare().multiselect if w.label == "Placements (target modules)"]


def test_every_variant_and_full_fine_tuning_run_on_the_transformer():
    result = run_request(request(preset("text", **{**TINY, "epochs": 1}), [2], list(METHOD_SETS), [4.0]))
    assert result.methods == list(METHOD_SETS)
    for method, member in zip(result.methods, result.members, strict=True):
        assert member.status == "ok", (method, member.message)
        assert abs(member.losses["merged_on_shifted"] - member.losses["adapter_on_shifted"]) < 1e-3, method
    dora = result.members[result.methods.index("dora")]
    assert dora.params.lora_trainable > result.members[0].params.lora_trainable  # its magnitudes


def test_the_cli_runs_the_text_task_and_writes_its_samples(tmp_path):
    out = tmp_path / "run.json"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    assert main(["--preset", "text", *flags, "--targets", "v_proj,q", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["config"]["targets"] == "q,v" and len(data["samples"]) == 2
    assert set(data["spectra"]) == {"blocks.0.q_proj", "blocks.0.v_proj"}
