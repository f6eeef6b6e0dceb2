"""The text task through AppTest: choose it on the Playground, see its controls, train a small transformer, and
read back its loss and accuracy curves, its cards and the text both models write."""

from __future__ import annotations

import math

import pytest

from lora_core.settings.config import preset
from tests.test_app_pages import charts, start, trace, train, widget

# A transformer small enough for a few seconds of CPU (the preset's is about 25 s).
QUICK = {"preset": "text", "hidden": "32", "blocks": "1", "heads": "2", "context": "24", "n-samples": "512",
         "n-eval": "64", "pretrain-epochs": "6", "epochs": "3", "lr": "0.01", "rank": "4", "alpha": "8",
         "targets": "q,v,o,fc1", "seed": "301"}


@pytest.fixture(scope="module")
def text_run():
    return train(start("pages/1_Playground.py", **QUICK))


def test_the_text_preset_shows_the_transformers_controls():
    at = start("pages/1_Playground.py")
    widget(at.sidebar, "selectbox", "Preset").set_value("text").run()
    labels = {w.label for w in at.selectbox}
    assert {"Text shift", "Target modules"} <= labels and "Shift" not in labels and "Digits shift" not in labels
    assert widget(at, "selectbox", "Target modules").value == preset("text").targets
    for label, value in (("Blocks", 2), ("Heads", 4), ("Context", 64), ("Hidden size", 64)):
        assert widget(at, "number_input", label).value == value
    widget(at, "selectbox", "Target modules").set_value("all").run()
    assert at.query_params["targets"] == "all"


def test_training_draws_per_character_loss_and_accuracy(text_run):
    (curves, *_) = charts(text_run)
    assert curves["layout"]["yaxis"]["title"]["text"] == "cross-entropy (nats per character) (log scale)"
    assert "documentation" in curves["layout"]["xaxis2"]["title"]["text"]
    pre = trace(curves, "pretraining, held-out")["y"]
    assert len(pre) == 6 and pre[-1] < pre[0]
    result = text_run.session_state["lora_explorer"].last()
    assert trace(curves, "fine-tuning, held-out accuracy")["y"][-1] == pytest.approx(
        result.accuracies["adapter_on_shifted"])
    cards = {m.label: m.value for m in text_run.metric}
    assert cards["Merged · shifted"] == f"{100 * result.accuracies['merged_on_shifted']:.1f} %"


def test_the_page_shows_each_prompt_continued_by_both_models(text_run):
    result = text_run.session_state["lora_explorer"].last()
    shown = [c.value for c in text_run.code]
    for sample in result.samples:
        assert sample["prompt"] in shown and sample["base"] in shown and sample["adapted"] in shown
    assert any("the shift's text" in c.value for c in text_run.caption)
    loss = result.losses["merged_on_shifted"]
    assert any(f"merged {loss:.3f} nats ({loss / math.log(2):.3f} bits)" in c.value for c in text_run.caption)
    heat = next(c for c in charts(text_run) if c["layout"]["title"]["text"].startswith("Where each character looks"))
    assert heat["data"][1]["z"] == result.samples[0]["attention"]["adapted"]


def test_a_chart_with_many_entries_keeps_its_legend_off_the_title(text_run):
    """Four layers of rank 4 are sixteen lines of directions: their legend goes on the right, not over the title."""
    dynamics = next(c for c in charts(text_run) if c["layout"]["title"]["text"].startswith("ΔW's directions"))
    assert len([t for t in dynamics["data"] if t.get("showlegend") is not False]) == 16
    assert dynamics["layout"]["legend"]["orientation"] == "v" and dynamics["layout"]["legend"]["x"] > 1
    (curves, *_) = charts(text_run)
    assert curves["layout"]["legend"]["orientation"] == "h"  # six entries stay above the plot


def test_the_spectrum_page_shows_one_projection_at_a_time_and_parameters_the_transformer(text_run):
    """Last in this file: it takes the session to other pages."""
    at = text_run
    at.switch_page("pages/3_Spectrum.py").run()
    assert not at.exception, at.exception
    result = at.session_state["lora_explorer"].last()
    layer = widget(at, "selectbox", "Layer")
    assert layer.options == list(result.spectra) == [f"blocks.0.{m}" for m in ("q_proj", "v_proj", "o_proj", "fc1")]
    layer.set_value("blocks.0.fc1").run()
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert any("blocks.0.fc1" in t for t in titles) and not any("blocks.0.q_proj" in t for t in titles)
    assert any("a transformer of 1 block(s), width 32" in m.value for m in at.markdown)
    at.switch_page("pages/2_Parameters.py").run()
    assert not at.exception, at.exception
    cards = {m.label: m.value for m in at.metric}
    assert cards["LoRA parameters"] == f"{result.params.lora_trainable:,}"
    assert cards["Full parameters"] == f"{result.params.full_trainable:,}"
