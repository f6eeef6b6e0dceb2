"""The app's building blocks without a browser: figures from hand-built results, the URL, cancellation."""

from __future__ import annotations

import math

import pytest
import torch
from streamlit.testing.v1 import AppTest

import ui
from lora_core import figures
from lora_core.analysis import adam_state_bytes
from lora_core.config import preset
from lora_core.results import ExperimentResult, LayerParams, LayerSpectra, ParamCounts, PhaseHistory
from lora_core.tasks import make_tasks


def hand_built(status: str = "ok") -> ExperimentResult:
    cfg = preset("default", rank=1, pretrain_epochs=3, epochs=3)
    fine = [4.0, 0.5, 0.01] if status == "ok" else [4.0, math.inf]
    return ExperimentResult(
        config=cfg.to_dict(), status=status, device="cpu", path="autograd",
        history={"pretrain": PhaseHistory([9.0, 1.0, 0.1], [9.5, 1.1, 0.12]), "finetune": PhaseHistory(fine, fine)},
        losses={"base_on_original": 0.1, "base_on_shifted": 60.0, "adapter_on_shifted": 0.01,
                "merged_on_shifted": 0.012},
        merge_max_abs_diff=1e-6, params=ParamCounts(256, 8192, [LayerParams("layer1", 64, 64, 128, 4096)]),
        spectra={"layer1": LayerSpectra([3.0], [3.0, 1e-7, 0.0], [2.0, 1.0, 0.5], [3.5, 1.0, 0.5])},
        timings={"pretrain_s": 0.5, "finetune_s": 0.4, "analysis_s": 0.01})


def test_loss_figure_puts_both_phases_on_one_log_axis_and_leaves_gaps_for_infinities():
    fig = figures.result_loss_figure(hand_built("diverged")).to_dict()
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert fig["layout"]["title"]["text"] and fig["layout"]["xaxis"]["title"]["text"]
    fine = next(t for t in fig["data"] if t["name"] == "fine-tuning, held-out")
    assert list(fine["x"]) == [4, 5] and list(fine["y"]) == [4.0, None]
    assert any("diverged" in a["text"] for a in fig["layout"]["annotations"])
    assert fig["layout"]["xaxis"]["range"] == [0.5, 6.5]


def test_overlay_aligns_runs_at_the_start_of_fine_tuning():
    fig = figures.overlay_figure({"a": hand_built(), "b": hand_built()}).to_dict()
    assert [list(t["x"]) for t in fig["data"]] == [[-2, -1, 0, 0.5, 1, 2, 3]] * 2


def test_spectra_helpers():
    assert figures.direction_count([3.0, 1e-7, 0.0]) == 1
    assert figures.cumulative_energy([3.0, 4.0]) == pytest.approx([9 / 25, 1.0])
    fig = figures.delta_figure(hand_built(), "layer1").to_dict()
    assert [t["name"] for t in fig["data"]] == ["after merging: W_merged − W", "before merging: from B and A"]
    assert list(fig["data"][0]["y"]) == [3.0, 1e-7, None]


@pytest.mark.parametrize("shift", ["constant", "low_rank", "full_rank"])
def test_shift_singular_values_match_the_task(shift):
    cfg = preset("default", shift=shift, shift_rank=3, d_in=12, hidden=8, d_out=10, n_samples=4, n_eval=4)
    original, shifted = make_tasks(cfg)
    expected = torch.linalg.svdvals((shifted.theta - original.theta).double())
    assert figures.shift_singular_values(cfg) == pytest.approx(expected.tolist(), abs=1e-5)
    assert figures.direction_count(figures.shift_singular_values(cfg)) == {"constant": 1, "low_rank": 3,
                                                                            "full_rank": 10}[shift]


def test_factored_gap_and_card_numbers():
    s = LayerSpectra([3.0, 1.0], [3.0, 0.999, 1e-8], [], [])
    assert figures.factored_gap(s) == pytest.approx(0.001 / 3)
    assert [figures.number(v) for v in (None, 0.0, 9.49e-4, 65.6, 0.027, 1.5e-5, 2e6)] == [
        "—", "0", "9.49e-04", "65.6", "0.027", "1.50e-05", "2.00e+06"]


def test_empty_loss_figure_waits_with_the_planned_epochs():
    fig = figures.empty_loss_figure(30, 40).to_dict()
    assert fig["layout"]["xaxis"]["range"] == [0.5, 70.5]
    assert all(len(t["x"]) == 0 for t in fig["data"])


def test_parameter_counts_table_and_memory():
    table = figures.shapes_table({"attn": (4096, 4096)}, 8)
    assert table.loc[0, "LoRA params (r=8)"] == 65_536 and table.loc[0, "full params"] == 4096 * 4096
    assert adam_state_bytes(1000) == 8000
    assert figures.human_bytes(3 * 2**20) == "3.0 MiB"
    assert figures.break_even_rank(4096, 4096) == 2048


def test_runs_table_has_settings_losses_time_and_device():
    table = figures.runs_table({"#1": hand_built()})
    assert table.loc[0, "rank"] == 1 and table.loc[0, "merged_on_shifted"] == 0.012
    assert table.loc[0, "device"] == "cpu" and table.loc[0, "time (s)"] == pytest.approx(0.91)


# ---- the URL ------------------------------------------------------------------------------------------------

def test_url_round_trip_uses_cli_names_and_only_what_differs_from_the_preset():
    s = {**ui._preset_settings("article"), "rank": 4, "shift": "low_rank", "shift_scale": 0.5}
    params = ui.url_params(s)
    assert params == {"preset": "article", "rank": "4", "shift": "low_rank", "shift-scale": "0.5"}
    assert ui.parse_params(params) == (s, [])
    assert ui.parse_params({"shift_scale": "0.5", "Shift": "low-rank"})[0]["shift"] == "low_rank"


def test_url_values_that_only_work_together_are_accepted_together():
    s, warnings = ui.parse_params({"rank": "40", "d-in": "48", "hidden": "48", "d-out": "48"})
    assert not warnings and s["rank"] == 40
    s, warnings = ui.parse_params({"d-in": "8", "rank": "50"})
    assert s["d_in"] == 8 and s["rank"] == preset("default").rank
    assert len(warnings) == 1 and warnings[0].startswith("rank=50")


def test_plain_text_cannot_inject_markup():
    shown = ui.plain("<b>x</b> [a](javascript:1) $x$ `c`")
    assert "\\<b\\>" in shown and "\\[a\\]" in shown and "\\$" in shown and "\\`" in shown


def test_parse_shapes():
    assert ui.parse_shapes("4096x4096, 12 × 3,bad, 0x5") == ({"your layer 1": (4096, 4096),
                                                              "your layer 2": (12, 3)}, ["bad", "0x5"])


# ---- cancellation -------------------------------------------------------------------------------------------

def _script_that_is_overtaken() -> None:
    import streamlit as st

    import ui
    from lora_core.config import preset

    config = preset("default", d_in=8, hidden=8, d_out=8, n_samples=64, n_eval=16, pretrain_epochs=4, epochs=50,
                    seed=4242)
    original = ui.run_experiment

    def overtaken(config, on_progress):
        def hook(p):
            if p.phase == "finetune" and p.epoch == 3:
                st.session_state["active_run"] = "a newer script run"  # what a moved slider's rerun does
            return on_progress(p)
        return original(config, hook)

    ui.run_experiment = overtaken
    try:
        result, _ = ui.train(config, st.empty(), st.empty())
    finally:
        ui.run_experiment = original
    st.write(f"{result.status} {len(result.history['finetune'].train_loss)} {ui.cached(config) is None}")


def test_a_newer_run_cancels_the_old_one_within_an_epoch_and_it_is_not_cached():
    at = AppTest.from_function(_script_that_is_overtaken, default_timeout=60).run()
    assert not at.exception
    assert at.markdown[-1].value == "cancelled 3 True"
