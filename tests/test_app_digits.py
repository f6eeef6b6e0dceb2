"""The digits task through AppTest: choose it on the Playground, train, read the loss and accuracy curves, the
accuracy cards and the sample grid back; the Spectrum, Parameters and Compare pages on a digits run."""

from __future__ import annotations

import json

import pytest

from lora_core.settings.config import preset
from tests.test_app_pages import charts, start, trace, train, widget

# Short enough for a test, long enough to recover from a quarter turn (the default is 30 and 30 epochs).
QUICK = {"task": "digits", "pretrain-epochs": "12", "epochs": "12", "rank": "4", "alpha": "8", "seed": "201"}


@pytest.fixture(scope="module")
def digits_run():
    at = start("pages/1_Playground.py", **QUICK)
    return train(at)


def test_the_task_control_switches_the_shift_controls():
    at = start("pages/1_Playground.py")
    labels = {w.label for w in at.selectbox}
    assert "Shift" in labels and "Digits shift" not in labels
    widget(at, "selectbox", "Task").set_value("digits").run()
    labels = {w.label for w in at.selectbox}
    assert {"Digits shift", "Adapted layers"} <= labels and "Shift" not in labels
    assert widget(at, "number_input", "Rotation angle (°)").value == 90
    assert "Input size d_in" not in {w.label for w in at.number_input}  # the digits fix the sizes
    assert at.query_params["task"] == "digits"
    widget(at, "selectbox", "Digits shift").set_value("noised").run()
    assert widget(at, "number_input", "Noise σ").value == pytest.approx(preset("digits").noise)


def test_training_draws_loss_and_accuracy_for_both_phases(digits_run):
    (curves, _, samples) = charts(digits_run)
    assert curves["layout"]["title"]["text"] == "Loss and accuracy per epoch"
    assert curves["layout"]["yaxis"]["title"]["text"] == "cross-entropy (log scale)"
    assert curves["layout"]["yaxis2"]["title"]["text"].startswith("held-out accuracy")
    pre = trace(curves, "pretraining, held-out accuracy")["y"]
    fine = trace(curves, "fine-tuning, held-out accuracy")["y"]
    assert len(pre) == 12 and len(fine) == 12
    assert pre[-1] >= 0.9 and fine[0] < fine[-1]
    assert trace(curves, "fine-tuning, held-out accuracy")["x"][0] == 13
    result = digits_run.session_state["lora_explorer"].last()
    assert fine[-1] == pytest.approx(result.accuracies["adapter_on_shifted"])
    assert len(samples["data"]) == 2 * 12  # original and shifted image of each sample


def test_cards_show_accuracy_and_the_grid_the_predictions(digits_run):
    result = digits_run.session_state["lora_explorer"].last()
    cards = {m.label: m.value for m in digits_run.metric}
    assert cards["Base · original"] == f"{100 * result.accuracies['base_on_original']:.1f} %"
    assert cards["Merged · shifted"] == f"{100 * result.accuracies['merged_on_shifted']:.1f} %"
    assert result.accuracies["base_on_shifted"] < 0.3 < 0.8 < result.accuracies["merged_on_shifted"]
    assert float(cards["Merge check"]) < 1e-4
    assert any(c.value.startswith(f"Fine-tuning and merging took the accuracy on shifted digits from "
                                  f"{100 * result.accuracies['base_on_shifted']:.1f} % to "
                                  f"{100 * result.accuracies['merged_on_shifted']:.1f} %") for c in digits_run.caption)
    (_, _, samples) = charts(digits_run)
    first = result.samples[0]
    title = samples["layout"]["annotations"][0]["text"]
    assert title.startswith(f"<b>{first['label']}</b>") and f"base {first['base']}<" in title
    assert f"tuned {first['adapted']}<" in title
    right = sum(s["adapted"] == s["label"] for s in result.samples)
    assert any(f"the fine-tuned model {right}." in c.value for c in digits_run.caption)
    shifted = trace(samples, f"shifted {first['label']}")["z"]
    assert shifted[0] == first["shifted"][:8]


def test_spectrum_and_parameters_pages_follow_the_digits_model(digits_run):
    at = digits_run
    at.switch_page("pages/3_Spectrum.py").run()
    assert not at.exception
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert [t for t in titles if "singular values of ΔW" in t] == [f"{layer}: singular values of ΔW"
                                                                   for layer in ("layer1", "layer2", "layer3")]
    assert any("model 64 → 64 → 64 → 10" in m.value for m in at.markdown)
    session = at.session_state["lora_explorer"]
    assert session.last_run == "#1 r=4 α=8 digits rotated"  # the digits' shift names the run, not θ's
    at.switch_page("pages/2_Parameters.py").run()
    assert not at.exception
    assert any("64 → 64 → 64 → 10" in m.value for m in at.markdown)
    cards = {m.label: m.value for m in at.metric}
    assert cards["LoRA parameters"] == f"{(64 + 64) * 4 * 2 + (64 + 10) * 4:,}"
    assert cards["Full parameters"] == f"{64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10:,}"  # with biases


def test_a_digits_sweep_runs_on_the_compare_page():
    at = start("pages/5_Compare.py", **{**QUICK, "epochs": "3", "pretrain-epochs": "3"}, ranks="1,4",
               methods="lora,full", alphas="1")
    widget(at, "button", "Run").click().run()
    assert not at.exception, at.exception
    result = at.session_state["lora_explorer"].sweep
    assert [run.status for run in result.members] == ["ok"] * 3
    assert all(run.accuracies["merged_on_shifted"] is not None for run in result.members)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Final loss against rank" in titles  # no floor promised: the digits have none


def test_home_points_to_the_digits_and_the_digits_preset_link_loads_them():
    home = start()
    assert any("handwritten digits" in m.value for m in home.markdown)
    at = start("pages/1_Playground.py", preset="digits")
    assert widget(at, "selectbox", "Task").value == "digits"
    assert widget(at, "selectbox", "Digits shift").value == "rotated"
