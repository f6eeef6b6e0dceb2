"""The app's figures and tables from hand-built results: what they plot, with which names and axes."""

from __future__ import annotations

import math

import pytest

from lora_core.measure.analysis import adam_state_bytes
from lora_core.settings.config import LABELS, preset
from lora_core.settings.results import ExperimentResult, LayerParams, LayerSpectra, ParamCounts, PhaseHistory
from ui import figures, training_figures


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
    fig = training_figures.result_figure(hand_built("diverged")).to_dict()
    assert fig["layout"]["yaxis"]["title"]["text"] == "mean squared error (log scale)"
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert fig["layout"]["title"]["text"] and fig["layout"]["xaxis"]["title"]["text"]
    fine = next(t for t in fig["data"] if t["name"] == "fine-tuning, held-out")
    assert list(fine["x"]) == [4, 5] and list(fine["y"]) == [4.0, None]
    assert any("diverged" in a["text"] for a in fig["layout"]["annotations"])
    assert fig["layout"]["xaxis"]["range"] == [0.5, 6.5]


def test_a_classification_run_adds_held_out_accuracy_below_its_loss():
    result = hand_built("diverged")
    result.config = preset("digits", pretrain_epochs=3, epochs=3).to_dict()
    result.history["pretrain"].eval_accuracy = [0.5, 0.9, 0.95]
    result.history["finetune"].eval_accuracy = [0.1, 0.4]
    fig = training_figures.result_figure(result).to_dict()
    assert fig["layout"]["yaxis"]["title"]["text"] == "cross-entropy (log scale)"
    assert fig["layout"]["yaxis2"]["title"]["text"] == training_figures.ACCURACY_AXIS
    assert fig["layout"]["yaxis2"]["range"] == [0, 1.02] and fig["layout"]["yaxis"]["type"] == "log"
    fine = next(t for t in fig["data"] if t["name"] == "fine-tuning, held-out accuracy")
    assert list(fine["x"]) == [4, 5] and list(fine["y"]) == [0.1, 0.4] and fine["yaxis"] == "y2"
    assert any("diverged" in a["text"] for a in fig["layout"]["annotations"])
    assert training_figures.percent(0.9734) == "97.3 %" and training_figures.percent(None) == "—"


def test_the_runs_overlay_names_the_loss_of_each_task():
    digits = hand_built()
    digits.config = preset("digits", pretrain_epochs=3, epochs=3).to_dict()
    title = figures.overlay_figure({"a": digits}).to_dict()["layout"]["yaxis"]["title"]["text"]
    assert title == "cross-entropy (log scale)"
    mixed = figures.overlay_figure({"a": hand_built(), "b": digits}).to_dict()["layout"]["yaxis"]["title"]["text"]
    assert "mean squared error (linear runs)" in mixed and "cross-entropy (digits runs)" in mixed


def test_overlay_aligns_runs_at_the_start_of_fine_tuning():
    fig = figures.overlay_figure({"a": hand_built(), "b": hand_built()}).to_dict()
    assert [list(t["x"]) for t in fig["data"]] == [[-2, -1, 0, 0.5, 1, 2, 3]] * 2


def test_delta_figure_names_both_spectra_and_gaps_zeros():
    fig = figures.delta_figure(hand_built(), "layer1").to_dict()
    assert [t["name"] for t in fig["data"]] == ["after merging: W_merged − W", "before merging: from B and A"]
    assert list(fig["data"][0]["y"]) == [3.0, 1e-7, None]


def test_card_numbers():
    assert [figures.number(v) for v in (None, 0.0, 9.49e-4, 65.6, 0.027, 1.5e-5, 2e6)] == [
        "—", "0", "9.49e-04", "65.6", "0.027", "1.50e-05", "2.00e+06"]


def test_empty_loss_figure_waits_with_the_planned_epochs():
    fig = training_figures.empty_figure(30, 40, "linear").to_dict()
    assert fig["layout"]["xaxis"]["range"] == [0.5, 70.5]
    assert all(len(t["x"]) == 0 for t in fig["data"])


def test_parameter_counts_table_and_memory():
    table = figures.shapes_table({"attn": (4096, 4096)}, 8)
    assert table.loc[0, "LoRA params (r=8)"] == 65_536 and table.loc[0, "full params"] == 4096 * 4096
    assert adam_state_bytes(1000) == 8000
    assert figures.human_bytes(3 * 2**20) == "3.0 MiB"
    assert table.loc[0, "break-even rank"] == "2,048.0"


def test_runs_table_has_settings_losses_time_and_device():
    table = figures.runs_table({"#1": hand_built()})
    assert table.loc[0, "rank"] == 1 and table.loc[0, "merged_on_shifted"] == 0.012
    assert table.loc[0, "device"] == "cpu" and table.loc[0, "time (s)"] == pytest.approx(0.91)
    assert [c for c in table.columns if c in LABELS] == list(LABELS)  # every Playground setting, in order


def test_long_histories_are_thinned_to_a_bounded_figure_keeping_the_ends():
    long = PhaseHistory([float(i + 1) for i in range(100_000)], [float(i + 1) for i in range(100_000)])
    fig = figures.loss_figure({"pretrain": long, "finetune": PhaseHistory([1.0], [math.inf])}, (100_000, 1))
    pre = next(t for t in fig.to_dict()["data"] if t["name"] == "pretraining, held-out")
    assert len(pre["x"]) <= figures.MAX_POINTS + 1
    assert pre["x"][0] == 1 and pre["x"][-1] == 100_000 and pre["y"][-1] == 100_000.0
    assert all(y == x for x, y in zip(pre["x"], pre["y"], strict=True))  # points keep their own epoch
    fine = next(t for t in fig.to_dict()["data"] if t["name"] == "fine-tuning, held-out")
    assert list(fine["x"]) == [100_001] and list(fine["y"]) == [None]
    assert len(figures.loss_figure({"pretrain": long, "finetune": PhaseHistory()}).to_json()) < 200_000


def test_the_phase_note_sits_inside_the_plot_below_the_legend():
    """The note at the phase line used to sit above the plot, over the legend (issue 19)."""
    history = {p: PhaseHistory([1.0, 0.5], [1.0, 0.5]) for p in ("pretrain", "finetune")}
    fig = figures.loss_figure(history, (2, 2))
    note = next(a for a in fig.layout.annotations if a.text == figures.PHASE_NOTE)
    assert note.yref == "paper" and note.y == 0.0 and note.yanchor == "bottom"  # the plot's foot, not above it
    assert fig.layout.legend.y >= 1.0 and fig.layout.legend.yanchor == "bottom"  # the legend stays above
