"""Beyond the Playground in headless Chromium: Compare's grid, the Inspector's upload, the digits task."""

from __future__ import annotations

import subprocess
import sys
import time
from urllib.parse import urlencode

from page_tools import SMALL, assert_clean, charts, nav, open_grid, run_grid, screenshot, settle, train
from server_probe import report

from ui.plan_figures import TITLE as PLAN


def test_compare_a_grid_in_the_browser(server, page):
    grid = {"methods": "lora,rslora,full", "ranks": "1,2,4", "alphas": "1,8", "shift": "low_rank", "shift-rank": 3}
    open_grid(page, server, {**SMALL, **grid}, 13)
    run_grid(page)
    settle(page)
    by_rank_title = "Final loss against rank, and the best any adapter of that rank could do"
    by_alpha_title = "Final loss over rank × α: α/r against α/√r"
    figs = charts(page, need=(by_rank_title, by_alpha_title))
    by_rank = figs[by_rank_title]
    names = [t["name"] for t in by_rank["data"]]
    assert {"LoRA α=1", "rsLoRA α=8", "floor: lower bound with 2r directions"} <= set(names)
    assert all(len(t["y"]) == 3 for t in by_rank["data"] if t["name"] != "full fine-tuning")
    assert by_alpha_title in figs
    screenshot(page, "compare")
    assert_clean(page)


def test_the_default_grid_from_click_to_charts_is_reported(server, page):
    """Compare's default grid on the default preset's base, kept by a one-member grid before: the seconds from
    pressing Run to every chart drawn, reported for the README (test-artifacts/timings.txt), never asserted."""
    open_grid(page, server, {"seed": 11, "methods": "lora", "ranks": 1, "alphas": 1}, 1)
    run_grid(page)  # pretrains the base (and teaches the server its speed)
    open_grid(page, server, {"seed": 11}, 25)  # the default grid, a new session
    plan = charts(page, need=PLAN)[PLAN]  # drawn before Run: the tab has its chart library when the result comes
    assert plan["data"][0]["y"] == [(64 + 64) * 2 * r for r in (1, 2, 4, 8)]  # LoRA and rsLoRA, both layers
    start = time.perf_counter()
    run_grid(page)
    result_at = time.perf_counter() - start  # the result's caption is on the page: the server's part is done
    figs = charts(page, need=("Final loss against rank", "Forgetting", "Intruder dimensions", "Subspace similarity"))
    seconds = time.perf_counter() - start
    caption = page.get_by_text("members in", exact=False).first.inner_text()
    report(page.artifacts, f"Compare's default grid, base kept, click to charts in the browser: {seconds:.2f} s "
                           f"(click to the result's caption {result_at:.2f} s, then the charts drawn "
                           f"{seconds - result_at:.2f} s; {len(figs)} charts; the page: {caption.split(' s')[0]} s)")
    assert "estimated" in caption  # the server said what it expected, and how it went
    assert_clean(page)


def test_upload_an_adapter_to_the_inspector(server, page, tmp_path):
    folder = tmp_path / "adapter"
    flags = [f"--{k}={v}" for k, v in SMALL.items()]
    subprocess.run([sys.executable, "-m", "lora_core", *flags, "--rank", "3", "--save-adapter", str(folder)],
                   check=True, capture_output=True, timeout=120)
    page.goto(f"{server}/Inspector")
    settle(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(folder / "adapter_model.safetensors"), str(folder / "adapter_config.json")])
    page.get_by_text("Adapter parameters").first.wait_for(timeout=60_000)
    settle(page)
    spectra = charts(page, need="Singular values of ΔW = s·B·A")["Singular values of ΔW = s·B·A"]
    assert {t["name"] for t in spectra["data"]} == {"layer1", "layer2"}
    assert all(len(t["y"]) == 3 for t in spectra["data"])
    screenshot(page, "inspector")
    assert_clean(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([])
    (tmp_path / "evil.bin").write_bytes(b"\x80\x04K.")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files([str(tmp_path / "evil.bin")])
    page.get_by_text("could run code", exact=False).first.wait_for(timeout=30_000)
    assert_clean(page)


def test_digits_choose_the_task_train_and_see_accuracy_and_the_sample_grid(server, page):
    page.goto(f"{server}/Playground?{urlencode({'seed': 9})}")
    settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    sidebar.locator('[data-testid="stSelectbox"]').filter(has_text="Task").first.click()
    page.get_by_role("option", name="handwritten digits (MLP)").click()
    page.wait_for_url("**task=digits*")
    settle(page)
    assert sidebar.get_by_text("Digits shift", exact=True).count() == 1
    assert sidebar.get_by_text("Input size d_in", exact=True).count() == 0
    seconds = train(page)
    figs = charts(page, need=("Loss and accuracy per epoch", "Held-out digits"))
    curves = figs["Loss and accuracy per epoch"]
    accuracy = {t["name"]: t["y"] for t in curves["data"] if t["name"].endswith("held-out accuracy")}
    assert accuracy["pretraining, held-out accuracy"][-1] >= 0.95
    assert accuracy["fine-tuning, held-out accuracy"][-1] >= 0.85
    grid = next(c for t, c in figs.items() if t.startswith("Held-out digits"))
    assert len(grid["data"]) == 24
    assert page.get_by_text("Merged · shifted", exact=True).count() == 1
    screenshot(page, "playground-digits")
    report(page.artifacts, f"default digits run in the browser: {seconds:.2f} s")
    nav(page, "Spectrum")
    assert "layer3: singular values of ΔW" in charts(page, need="layer3: singular values of ΔW")
    screenshot(page, "spectrum-digits")
    assert_clean(page)
    nav(page, "Compare")  # the session's settings (the digits) with the default grid, less two of its α
    alphas = page.locator('[data-testid="stMultiSelect"]').filter(has_text="α values")
    for alpha in ("4", "16"):  # 9 members instead of 25: what is checked below is α=1's
        alphas.get_by_role("button", name=f"Remove {alpha}", exact=True).click()
        settle(page)
    assert page.get_by_text("9 members", exact=False).count() == 1
    page.get_by_role("button", name="Run").click()
    page.get_by_text("members in", exact=False).first.wait_for(timeout=120_000)
    settle(page)
    by_rank = charts(page, need="Held-out accuracy of the merged model")[
        "Held-out accuracy of the merged model against rank"]
    shifted = next(t["y"] for t in by_rank["data"] if t["name"] == "LoRA α=1, shifted")
    assert len(shifted) == 4 and shifted[-1] > shifted[0]  # ranks 1, 2, 4, 8: more rank, more recovered
    screenshot(page, "compare-digits")
    assert_clean(page)
