"""Every page through Streamlit's AppTest: set widgets, press Train, read the figures' data back."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lora_core.lessons import LESSONS
from lora_core.measure.analysis import direction_count, full_param_count, lora_param_count
from lora_core.settings.config import PRESETS, preset
from ui.navigation import PAGES

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120  # AppTest's default is 3 s; a run trains a model
# A model small enough to train in well under a second that still tells the story.
SMALL = {"d-in": "16", "hidden": "16", "d-out": "16", "n-samples": "256", "n-eval": "64", "pretrain-epochs": "15",
         "epochs": "15", "batch-size": "32"}


def start(page: str = "app.py", **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update(params)
    at.run()
    if page != "app.py":
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def widget(at: AppTest, kind: str, label: str):
    matches = [w for w in getattr(at, kind) if w.label == label]
    assert len(matches) == 1, f"{kind} {label!r}: {[w.label for w in getattr(at, kind)]}"
    return matches[0]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def trace(chart: dict, name: str) -> dict:
    return next(t for t in chart["data"] if t.get("name") == name)


def train(at: AppTest) -> AppTest:
    widget(at, "button", "Train").click().run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="module")
def trained() -> AppTest:
    """A session that trained r = 1 on the small model (seeded apart from other tests)."""
    at = start("pages/1_Playground.py", **SMALL, rank="1", alpha="1", seed="101")
    return train(at)


# ---- Home ---------------------------------------------------------------------------------------------------

def test_home_explains_lora_links_the_pages_and_names_the_device():
    at = start()
    text = " ".join(m.value for m in at.markdown)
    assert "B A x" in text and "(d + k)" in text
    assert f"{len(LESSONS)} questions" in text  # counted from the lessons' table, not written down
    caption = " ".join(c.value for c in at.caption)
    assert "Training runs on:" in caption and ("cpu" in caption or "cuda" in caption or "mps" in caption)
    links = [p.proto.page for p in at.main.get("page_link")]
    assert links[:2] == ["Lessons", "Playground"]  # where to start
    assert set(links) == set(PAGES) - {"Home"}  # and every page named
    assert all(p.about in text for label, p in PAGES.items() if label != "Home")


def test_the_page_table_is_every_page_file_in_its_order():
    """ui/navigation.PAGES is where the pages are declared: one entry per script, in the files' order."""
    root = Path(__file__).resolve().parents[1]
    files = ["app.py", *sorted(str(p.relative_to(root)) for p in (root / "pages").glob("*.py"))]
    assert [p.path for p in PAGES.values()] == files
    assert all(p.path.endswith(f"_{p.label}.py") for p in list(PAGES.values())[1:])  # its URL path is its label


def test_every_page_runs_its_whole_body_inside_the_gate():
    """A page's body is one `with page(label):` block after its imports, so that it counts against the server's
    few concurrent builds (ui/gate.py) from its first widget to its last."""
    root = Path(__file__).resolve().parents[1]
    for p in PAGES.values():
        body = [node for node in ast.parse((root / p.path).read_text()).body
                if not isinstance(node, ast.Import | ast.ImportFrom)
                and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]  # the docstring
        assert len(body) == 1 and isinstance(body[0], ast.With), p.path
        call = body[0].items[0].context_expr
        assert call.func.id == "page" and call.args[0].value == p.label, p.path


# ---- Playground ---------------------------------------------------------------------------------------------

def test_playground_has_the_labelled_controls_with_the_default_preset():
    at = start("pages/1_Playground.py")
    default = preset("default")
    assert widget(at.sidebar, "slider", "Rank r").value == default.rank
    assert widget(at.sidebar, "slider", "Alpha α").value == default.alpha
    shift = widget(at.sidebar, "selectbox", "Shift")
    assert shift.options == ["constant", "low-rank", "low-rank, directions halving", "full-rank"]
    assert widget(at.sidebar, "number_input", "Shift size").value == default.shift_scale
    assert not [w for w in at.sidebar.number_input if w.label == "Shift rank"]
    assert widget(at.sidebar, "selectbox", "Preset").options == ["Default", "Digits", "Text (a small transformer)",
                                                                 "Article", "Dynamics (directions one at a time)"]
    for label in ("Input size d_in", "Hidden size", "Output size d_out", "Training samples", "Pretraining epochs",
                  "Fine-tuning epochs", "Batch size", "Learning rate", "Seed"):
        widget(at.sidebar, "number_input", label)
    shift.select("low_rank").run()
    assert widget(at.sidebar, "number_input", "Shift rank").value == default.shift_rank
    assert at.query_params["shift"] == "low_rank"


def test_train_draws_both_phases_and_the_loss_falls(trained):
    (loss, _) = charts(trained)
    assert "Loss" in loss["layout"]["title"]["text"]
    assert loss["layout"]["yaxis"]["type"] == "log" and loss["layout"]["xaxis"]["title"]["text"]
    pre = trace(loss, "pretraining, held-out")["y"]
    fine = trace(loss, "fine-tuning, held-out")["y"]
    assert len(pre) == 15 and len(fine) == 15
    assert pre[-1] < pre[0] / 10 and fine[-1] < fine[0] / 10
    assert trace(loss, "fine-tuning, train")["x"][0] == 16  # fine-tuning continues the epoch axis


def test_train_draws_each_layers_directions_epoch_by_epoch(trained):
    """The run's recorded dynamics, read back from the chart: r lines per layer, one point per epoch, ending
    on the spectrum the Spectrum page draws of the merged ΔW."""
    (_, directions) = charts(trained)
    assert directions["layout"]["title"]["text"] == "ΔW's directions per epoch"
    result = trained.session_state["lora_explorer"].last()
    for layer in ("layer1", "layer2"):
        line = trace(directions, f"{layer}: σ1 of ΔW")
        assert list(line["x"]) == list(range(1, 16))
        assert line["y"][-1] == pytest.approx(result.spectra[layer].delta_merged[0], rel=1e-4)
    assert not [t for t in directions["data"] if t["name"].endswith("σ2 of ΔW")]  # r = 1: one direction a layer
    # the constant shift is one direction: the model's learned part of it rises to its σ, and the caption says when
    learned = next(t for t in directions["data"] if t["name"].startswith("shift's first direction"))
    sigma = result.shift_spectrum[0]
    half = next(x for x, y in zip(learned["x"], learned["y"], strict=True) if y >= sigma / 2)
    assert learned["y"][-1] == pytest.approx(sigma, rel=0.05)
    assert any(c.value.startswith(f"The shift's first direction was half learned at epoch {half}.")
               for c in trained.caption)


def test_metric_cards_and_merge_check(trained):
    cards = {m.label: m.value for m in trained.metric}
    assert float(cards["Merged · shifted"]) < float(cards["Base · shifted"]) / 10
    assert float(cards["Adapter · shifted"]) == pytest.approx(float(cards["Merged · shifted"]), rel=1e-2)
    result = trained.session_state["lora_explorer"].last()
    assert float(cards["Merged · original"]) == pytest.approx(result.losses["merged_on_original"], rel=1e-2)
    assert any(c.value.startswith("Floor: no change of this method's reach can do better than")
               for c in trained.caption)
    assert float(cards["Merge check"]) < 1e-3
    assert any("-fold" in c.value for c in trained.caption)


def test_identical_settings_return_from_the_shared_cache(trained):
    at = start("pages/1_Playground.py", **SMALL, rank="1", alpha="1", seed="101")
    train(at)
    assert any("shared cache" in c.value for c in at.caption)
    assert charts(at)[0]["data"] == charts(trained)[0]["data"]


def test_a_diverged_run_shows_its_partial_curve_and_a_warning():
    at = train(start("pages/1_Playground.py", **SMALL, **{"shift-scale": "1e18", "seed": "102"}))
    assert any("diverged" in w.value for w in at.warning)
    loss = charts(at)[0]
    assert len(trace(loss, "pretraining, held-out")["y"]) == 15
    assert len(trace(loss, "fine-tuning, held-out")["y"]) < 15


def test_a_link_restores_its_settings_and_the_url_follows_the_widgets():
    at = start("pages/1_Playground.py", rank="3", alpha="6", shift="low-rank", shift_rank="2",
               **{"shift-scale": "0.5", "d-in": "32"})
    assert not at.warning
    assert widget(at.sidebar, "slider", "Rank r").value == 3
    assert widget(at.sidebar, "slider", "Alpha α").value == 6.0
    assert widget(at.sidebar, "selectbox", "Shift").value == "low_rank"
    assert widget(at.sidebar, "number_input", "Shift rank").value == 2
    assert widget(at.sidebar, "number_input", "Shift size").value == 0.5
    assert widget(at.sidebar, "number_input", "Input size d_in").value == 32
    assert at.query_params["shift-rank"] == "2" and at.query_params["d-in"] == "32"
    widget(at.sidebar, "slider", "Rank r").set_value(5).run()
    assert at.query_params["rank"] == "5"


@pytest.mark.parametrize("params, named", [
    ({"rank": "-3"}, "rank=-3"),
    ({"alpha": "nan"}, "alpha=nan"),
    ({"lr": "fast"}, "lr=fast"),
    ({"epochs": "<script>alert(1)</script>"}, "epochs="),
    ({"shift": "[x](javascript:alert(1))"}, "shift="),
    ({"bogus": "1"}, "bogus=1"),
    ({"preset": "huge"}, "preset=huge"),
    ({"rank": "99"}, "rank=99"),  # above the smallest layer
])
def test_bad_link_values_are_ignored_with_a_warning_naming_them(params, named):
    at = start("pages/1_Playground.py", **params)
    warnings = " ".join(w.value for w in at.warning).replace("\\", "")
    assert named in warnings, warnings
    assert "<script>" not in " ".join(w.value for w in at.warning)
    assert widget(at.sidebar, "slider", "Rank r").value == preset("default").rank
    assert not at.error


def test_preset_article_loads_the_articles_sizes_without_training():
    at = start("pages/1_Playground.py")
    widget(at.sidebar, "selectbox", "Preset").select("article").run()
    assert widget(at.sidebar, "number_input", "Input size d_in").value == PRESETS["article"]["d_in"]
    assert widget(at.sidebar, "slider", "Rank r").value == PRESETS["article"]["rank"]
    assert at.query_params["preset"] == "article"
    (empty,) = charts(at)  # the loss chart waits, empty, with the article's 100 + 100 epochs on its axis
    assert all(len(t["x"]) == 0 for t in empty["data"]) and empty["layout"]["xaxis"]["range"] == [0.5, 200.5]


def test_settings_that_cannot_run_show_an_error_not_a_traceback():
    at = start("pages/1_Playground.py")
    widget(at.sidebar, "number_input", "Learning rate").set_value(0.0).run()
    assert not at.exception
    assert any("lr must be" in e.value for e in at.error)
    assert widget(at, "button", "Train").disabled


# ---- Parameters ---------------------------------------------------------------------------------------------

def test_parameters_page_works_without_a_run_and_counts_exactly():
    at = start("pages/2_Parameters.py")
    (chart,) = charts(at)
    assert "(d+k)r" in chart["layout"]["title"]["text"] and chart["layout"]["xaxis"]["type"] == "log"
    d = preset("default")
    same = d.d_in == d.hidden == d.d_out  # layers of one shape share a line
    lora = trace(chart, f"layer1{', layer2' if same else ''} {d.d_in}×{d.hidden}: LoRA (d+k)r")
    assert all(y == lora_param_count(d.d_in, d.hidden, x) for x, y in zip(lora["x"], lora["y"], strict=True))
    gpt3 = trace(chart, "GPT-3 175B attention projection 12288×12288: full dk")
    assert gpt3["y"][0] == full_param_count(12288, 12288)
    widget(at, "text_input", "More shapes, d×k").input("100x300, nonsense").run()
    assert any("nonsense" in w.value for w in at.warning)
    (chart,) = charts(at)
    assert trace(chart, "your layer 1 100×300: LoRA (d+k)r")
    table = at.dataframe[0].value
    assert "your layer 1" in set(table["layer"])
    assert {m.label for m in at.metric} >= {"LoRA parameters", "Fraction trained"}


# ---- Spectrum -----------------------------------------------------------------------------------------------

def test_spectrum_without_a_run_points_to_the_playground():
    at = start("pages/3_Spectrum.py")
    assert at.info and not at.get("plotly_chart")


def test_spectrum_delta_has_at_most_r_directions_and_agrees_before_and_after_merging(trained):
    trained.switch_page("pages/3_Spectrum.py").run()
    assert not trained.exception
    figs = {c["layout"]["title"]["text"]: c for c in charts(trained)}
    for layer in ("layer1", "layer2"):
        delta = figs[f"{layer}: singular values of ΔW"]
        merged = trace(delta, "after merging: W_merged − W")["y"]
        factored = trace(delta, "before merging: from B and A")["y"]
        assert len(factored) == 1 and direction_count([v or 0.0 for v in merged]) <= 1
        assert factored[0] == pytest.approx(merged[0], rel=1e-3)
        weights = figs[f"{layer}: singular values of the weight"]
        assert len(weights["data"]) == 2
    shift = next(c for t, c in figs.items() if t.startswith("What the constant shift needs"))
    assert direction_count(shift["data"][0]["y"]) == 1
    assert any("Cumulative energy" in t for t in figs)
    trained.switch_page("pages/1_Playground.py").run()


def test_the_spectrum_scrubs_through_training(trained):
    """The epoch slider shows ΔW as fine-tuning recorded it after that epoch, not as it ended."""
    trained.switch_page("pages/3_Spectrum.py").run()
    history = trained.session_state["lora_explorer"].last().history["finetune"]
    slider = trained.select_slider[0]
    assert slider.label == "Fine-tuning epoch" and slider.value == 15
    slider.set_value(3).run()
    assert not trained.exception
    epoch = next(c for c in charts(trained) if c["layout"]["title"]["text"].startswith("ΔW's singular values after"))
    assert epoch["layout"]["title"]["text"] == "ΔW's singular values after fine-tuning epoch 3"
    bars = {t["name"]: list(t["y"]) for t in epoch["data"]}
    assert bars == {layer: history.delta_spectra[layer][2] for layer in ("layer1", "layer2")}
    assert bars["layer1"] != history.delta_spectra["layer1"][-1]  # epoch 3 is not the end
    assert any(c.value.startswith("After fine-tuning epoch 3 of 15: layer1: σ₁ = ") for c in trained.caption)
    trained.switch_page("pages/1_Playground.py").run()


# ---- Runs ---------------------------------------------------------------------------------------------------

def test_runs_page_lists_overlays_and_downloads(trained):
    trained.switch_page("pages/1_Playground.py").run()
    widget(trained.sidebar, "slider", "Rank r").set_value(2).run()
    train(trained)
    assert any("pretrained base reused" in c.value for c in trained.caption)  # only r changed
    trained.switch_page("pages/4_Runs.py").run()
    assert not trained.exception
    table = trained.dataframe[0].value
    assert list(table["rank"]) == [1, 2] and set(table["status"]) == {"ok"}
    (overlay,) = charts(trained)
    assert len(overlay["data"]) == 2
    labels = [b.proto.label for b in trained.get("download_button")]
    assert labels == ["Download the table (CSV)", "Download its result (JSON)"]


def test_runs_without_a_run_points_to_the_playground():
    at = start("pages/4_Runs.py")
    assert at.info and not at.dataframe


def test_full_fine_tuning_runs_and_its_spectrum_has_no_factors():
    at = train(start("pages/1_Playground.py", **SMALL, method="full", seed="103"))
    cards = {m.label: m.value for m in at.metric}
    assert cards["Merge check"] == "—"
    at.switch_page("pages/3_Spectrum.py").run()
    assert not at.exception
    deltas = [c for c in charts(at) if c["layout"]["title"]["text"].endswith("singular values of ΔW")]
    assert deltas and all(len(c["data"]) == 1 for c in deltas)  # only the merged spectrum


def test_a_run_over_the_servers_limits_is_refused_before_train_with_its_estimate():
    at = start("pages/1_Playground.py", preset="article", epochs="100000", **{"pretrain-epochs": "100000"})
    errors = " ".join(e.value for e in at.error).replace("\u200b", "").replace("\\", "")
    assert "cannot start here" in errors and "multiply-adds" in errors and "lower the epochs" in errors
    assert widget(at, "button", "Train").disabled
    at = start("pages/1_Playground.py", preset="article")
    assert not at.error and not widget(at, "button", "Train").disabled
    assert any("Estimated cost" in c.value for c in at.caption)


# ---- LoRA's variants ------------------------------------------------------------------------------------------

def test_method_controls_show_their_maths_and_a_dora_run_tells_its_truth_on_every_page():
    at = start("pages/1_Playground.py", **SMALL, rank="2", seed="103")
    for label in ("rsLoRA", "DoRA"):
        assert widget(at.sidebar, "checkbox", label).value is False
    assert widget(at.sidebar, "number_input", "LoRA+ ratio η_B/η_A").value == 1.0
    maths = " ".join(c.value for c in at.sidebar.caption)
    assert r"\alpha/\sqrt{r}" in maths and r"\lVert W + sBA\rVert" in maths and r"\eta_B" in maths
    widget(at.sidebar, "checkbox", "DoRA").check().run()
    assert at.query_params["use-dora"] in ("true", ["true"])
    metric_text = " ".join(c.value for c in at.caption)
    assert f"LoRA + DoRA trains {2 * (16 + 16) * 2 + 16 + 16:,} parameters" in metric_text
    train(at)
    assert any("LoRA + DoRA on the autograd path" in c.value for c in at.caption)
    at.switch_page("pages/3_Spectrum.py").run()
    assert not at.exception
    notes = " ".join(c.value for c in at.caption)
    assert "W' − W has 16 non-zero singular values of 16 possible" in notes
    figs = {c["layout"]["title"]["text"]: c for c in charts(at)}
    factored = trace(figs["layer1: singular values of ΔW"], "s·B·A from the factors (without DoRA's row scaling)")
    assert len(factored["y"]) == 2
    at.switch_page("pages/2_Parameters.py").run()
    assert widget(at, "checkbox", "DoRA").value is True
    assert any(m.label == "DoRA parameters" for m in at.metric)
    assert any("16 in layer1's magnitude vector" in c.value for c in at.caption)


def test_pissa_on_the_fast_path_and_its_change_measured_from_the_original_weights():
    at = start("pages/1_Playground.py", **SMALL, rank="2", seed="104", init="pissa", **{"lr-ratio": "4"})
    assert widget(at.sidebar, "selectbox", "Initialisation").value == "pissa"
    train(at)
    assert any("LoRA + PiSSA + LoRA+ on the fast path" in c.value for c in at.caption)
    looks = [c.value for c in at.caption if c.value.startswith("What to look for with ")]
    assert [text.split(":")[0] for text in looks] == ["What to look for with PiSSA", "What to look for with LoRA+"]
    at.switch_page("pages/3_Spectrum.py").run()
    figs = {c["layout"]["title"]["text"]: c for c in charts(at)}
    delta = figs["layer2: singular values of ΔW"]
    factored = trace(delta, "before merging: s·(BA − B₀A₀) from factors")["y"]
    merged = [v or 0.0 for v in trace(delta, "after merging: W_merged − W")["y"]]
    assert len(factored) == 4 and direction_count(merged) == 4  # 2r directions from the original W
    assert factored[0] == pytest.approx(merged[0], rel=1e-3)


def test_full_fine_tuning_hides_the_lora_only_controls():
    at = start("pages/1_Playground.py", **SMALL, method="full")
    assert not [w for w in at.sidebar.checkbox if w.label in ("rsLoRA", "DoRA")]
    assert not [w for w in at.sidebar.selectbox if w.label == "Initialisation"]
