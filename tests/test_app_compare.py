"""The Compare page through AppTest: choose a grid, press Run, read the figures' data back."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from lora_core.settings.budget import duration
from lora_core.sweep import request
from ui import live
from ui.grid import DEFAULT_GRID, grid_params, parse_grid
from ui.plan_figures import TITLE as PLAN
from ui.settings import to_config

APP = "../app.py"
SMALL = {"d-in": "16", "hidden": "16", "d-out": "16", "n-samples": "256", "n-eval": "256", "pretrain-epochs": "15",
         "epochs": "15", "batch-size": "32"}


def compare(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(params)
    at.run()
    at.switch_page("pages/5_Compare.py").run()
    assert not at.exception, at.exception
    return at


def multiselect(at: AppTest, label: str):
    return next(w for w in at.multiselect if w.label == label)


def charts(at: AppTest) -> dict[str, dict]:
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def trace(chart: dict, name: str) -> dict:
    return next(t for t in chart["data"] if t.get("name") == name)


def run(at: AppTest) -> AppTest:
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception, at.exception
    return at


def test_rank_one_ends_on_its_floor_and_no_member_goes_below_it():
    # the default model with a rank-4 shift, long enough for r = 1 to settle (the measurement)
    at = compare(shift="low_rank", **{"shift-rank": "4", "epochs": "200", "methods": "lora", "ranks": "1,2,3",
                                      "alphas": "2"})
    assert multiselect(at, "Ranks r").value == [1, 2, 3] and multiselect(at, "Methods").value == ["lora"]
    run(at)
    sweep = at.session_state["lora_explorer"].sweep
    by_rank = charts(at)["Final loss against rank, and the best any adapter of that rank could do"]
    reached = trace(by_rank, "LoRA α=2")
    floor = trace(by_rank, "floor: lower bound with 2r directions")
    assert reached["x"] == [1, 2, 3] and floor["x"] == [1, 2, 3]
    r1 = sweep.members[0]
    assert abs(reached["y"][0] - r1.floor) <= 4 * r1.floor_noise  # r = 1 ends on its floor
    for member in sweep.members:
        assert member.losses["merged_on_shifted"] >= member.floor - 4 * member.floor_noise
    assert floor["y"][0] == pytest.approx(r1.floor)


def test_a_default_grid_draws_every_figure_and_offers_the_downloads():
    at = compare(**SMALL, shift="low_rank", **{"shift-rank": "4"})
    assert {k: multiselect(at, v).value for k, v in
            {"methods": "Methods", "ranks": "Ranks r", "alphas": "α values", "seeds": "Seeds"}.items()} == \
        {k: v for k, v in DEFAULT_GRID.items() if k not in ("placements", "budget")}  # the text task's only
    assert any("25 members" in c.value for c in at.caption)
    run(at)
    figs = charts(at)
    heat = figs["Final loss over rank × α: α/r against α/√r"]
    assert [t["name"] for t in heat["data"]] == ["LoRA: s = α/r", "rsLoRA: s = α/√r"]
    assert len(heat["data"][0]["z"]) == 4 and len(heat["data"][0]["z"][0]) == 3  # ranks × α
    forgetting = figs["Forgetting: the merged model on the original task"]
    assert trace(forgetting, "LoRA α=1")["x"] == [1, 2, 4, 8]
    sweep = at.session_state["lora_explorer"].sweep
    full = sweep.members[-1].losses["merged_on_original"]
    assert trace(forgetting, "full fine-tuning")["y"][0] == pytest.approx(full)
    intruders = trace(figs["Intruder dimensions per rank"], "rsLoRA α=4")
    assert all(0 <= y <= 20 for y in intruders["y"])
    phi = next(v for k, v in figs.items() if k.startswith("Subspace similarity of layer1's A"))
    assert len(phi["data"][0]["z"]) == 1 and len(phi["data"][0]["z"][0]) == 8  # r = 1 against r = 8
    curves = figs["Fine-tuning, held-out loss per epoch"]
    assert len(curves["data"]) == 4 and all(len(t["y"]) == 15 for t in curves["data"])
    # the members' dynamics: how much of the shift's strongest direction each had learned, epoch by epoch
    growth = figs["The shift's direction 1: the share each member has learned, per epoch"]
    assert [t["name"] for t in growth["data"]] == [t["name"] for t in curves["data"]]
    first = next(m for m in sweep.members if m.config["rank"] == 1)
    assert growth["data"][0]["y"] == [row[0] for row in first.history["finetune"].modes_learned]
    next(s for s in at.selectbox if s.label == "Shift direction to follow").set_value(3).run()
    assert charts(at)["The shift's direction 4: the share each member has learned, per epoch"]
    table = at.dataframe[0].value
    assert len(table) == 25 and {"floor", "merged_on_original", "intruders_layer1"} <= set(table.columns)
    assert {b.label for b in at.get("download_button")} == {"Download the table (CSV)", "Download the sweep (JSON)"}
    assert at.query_params["ranks"] in ("1,2,4,8", ["1,2,4,8"])
    # what the server expected the sweep to take, kept in the result with how it went, and said on the page
    expected, ratio = sweep.estimate["seconds"], sweep.estimate["ratio"]
    assert expected > 0 and ratio * expected >= sweep.timings["total_s"]  # the server's clock counts it all
    assert any(f"(estimated {duration(expected)}, took {ratio:.2f}x that)" in c.value for c in at.caption)
    # the next estimate is in this server's time: the calibration has learned from this sweep
    at.run()
    sched, req = live.scheduler(), sched_request(at)
    assert sched.calibration.ratio("sweep:linear") != 1.0
    assert any(f"about {duration(sched.expected(req))} here" in c.value for c in at.caption)


def test_before_run_the_page_shows_what_each_member_trains():
    """The plan: per rank, each adapter method's trainable parameters ((d_in + d_out)·r per adapted layer, DoRA's
    magnitudes beside), methods that train the same numbers on one line, full fine-tuning's d_in·d_out as a level;
    gone once a sweep answers the grid, back when the grid changes."""
    at = compare(**SMALL, shift="low_rank", **{"shift-rank": "4"}, methods="lora,rslora,dora,full", ranks="1,2,8")
    plan = charts(at)[PLAN]
    widths = 16 + 16  # SMALL: 16 -> 16 -> 16, adapters on both layers
    assert trace(plan, "LoRA, rsLoRA")["x"] == [1, 2, 8]
    assert trace(plan, "LoRA, rsLoRA")["y"] == [2 * widths * r for r in (1, 2, 8)]
    assert trace(plan, "DoRA")["y"] == [2 * widths * r + 2 * 16 for r in (1, 2, 8)]  # + d_out per layer
    assert trace(plan, f"full fine-tuning: {2 * 16 * 16:,}")["y"] == [2 * 16 * 16] * 2
    run(at)
    assert PLAN not in charts(at)  # the results answer the grid
    multiselect(at, "Ranks r").set_value([1, 4]).run()
    assert trace(charts(at)[PLAN], "LoRA, rsLoRA")["x"] == [1, 4]


def sched_request(at: AppTest):
    """The request the page would submit for its grid and the session's settings."""
    state = at.session_state["lora_explorer"]
    grid = {k: at.session_state[f"w_grid_{k}"] for k in ("ranks", "methods", "alphas", "seeds")}
    return request(to_config(state.settings), grid["ranks"], grid["methods"], grid["alphas"], grid["seeds"])


def test_a_bad_grid_link_is_named_and_an_impossible_grid_refused():
    at = compare(**SMALL, ranks="1,2,999", methods="lora,magic")
    assert any("ranks=999" in w.value and "methods=magic" in w.value for w in at.warning)
    assert multiselect(at, "Ranks r").value == [1, 2]
    multiselect(at, "Ranks r").set_value([1, 2, 32]).run()  # 32 > the 16-wide model allows
    assert any("cannot run" in e.value and "r=32" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Run").disabled


def test_grid_parameters_round_trip():
    grid = {"methods": ["dora", "full"], "ranks": [2, 16], "alphas": [0.5, 8.0], "seeds": [3]}
    assert parse_grid(grid_params(grid)) == ({**grid, "placements": [], "budget": 0}, [])
    text = {**grid, "placements": ["q,v", "attention", "o,fc1,fc2"], "budget": 4096}
    assert grid_params(text)["placements"] == "q,v;attention;o,fc1,fc2"
    assert parse_grid(grid_params(text)) == (text, [])
    parsed, warnings = parse_grid({"placements": "V,q;w;all", "budget": "-3"})
    assert parsed["placements"] == ["q,v", "all"] and parsed["budget"] == 0 and len(warnings) == 2
    parsed, warnings = parse_grid({"alphas": "1,nan,3", "seeds": "1.5,2"})
    assert parsed["alphas"] == [1.0] and parsed["seeds"] == [2] and len(warnings) == 3


def test_a_grid_over_the_servers_limit_says_what_to_change():
    at = compare(preset="article", epochs="2000", ranks="1,2,4,8", methods="lora,rslora")
    errors = " ".join(e.value for e in at.error)
    assert "this grid would take about" in errors and "multiply" in errors and "fewer ranks" in errors
    assert next(b for b in at.button if b.label == "Run").disabled


def test_a_fresh_compare_page_starts_on_a_shift_whose_rank_matters():
    at = compare()
    assert at.session_state["lora_explorer"].settings["shift"] == "low_rank"
    assert at.session_state["lora_explorer"].settings["shift_rank"] == 4
    assert any("shift of rank 4" in c.value for c in at.caption)
    linked = compare(shift="constant", rank="1")  # a link's settings are its own
    assert linked.session_state["lora_explorer"].settings["shift"] == "constant"
    assert not any("shift of rank 4" in c.value for c in linked.caption)


def test_a_rerun_after_a_sweep_rebuilds_only_what_its_widgets_change(monkeypatch):
    """Moving "Members to overlay" redraws the member curves, not the grid's other figures or its table; the
    JSON download is made when pressed, not on every rerun."""
    from tests.artifacts import ARTIFACTS
    from ui import compare_figures

    built: dict[str, int] = {}
    for name in ("loss_by_rank", "member_curves", "members_table", "forgetting_figure"):
        original = getattr(compare_figures, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            built[_name] = built.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(compare_figures, name, counted)
    at = run(compare(**SMALL, shift="low_rank", **{"shift-rank": "4"}))  # the default grid: 25 members
    assert len(at.session_state["lora_explorer"].sweep.members) == 25
    assert built == {"loss_by_rank": 1, "member_curves": 1, "members_table": 1, "forgetting_figure": 1}
    overlay = multiselect(at, "Members to overlay")
    start = time.perf_counter()
    overlay.set_value(overlay.value[:1]).run()
    seconds = time.perf_counter() - start
    assert not at.exception
    assert built == {"loss_by_rank": 1, "member_curves": 2, "members_table": 1, "forgetting_figure": 1}
    assert len(charts(at)["Fine-tuning, held-out loss per epoch"]["data"]) == 1
    json_button = next(b for b in at.get("download_button") if b.proto.label == "Download the sweep (JSON)")
    assert json_button.proto.deferred_file_id and not json_button.proto.url  # deferred: no bytes with the page
    ARTIFACTS.mkdir(exist_ok=True)
    with (ARTIFACTS / "timings.txt").open("a") as f:
        f.write(f"Compare: a rerun moving 'Members to overlay' after the default grid (25 members) took "
                f"{seconds:.3f} s in AppTest (script and all)\n")
