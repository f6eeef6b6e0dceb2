"""The app in headless Chromium: pages load cleanly, Train draws a falling loss, links restore settings."""

from __future__ import annotations

import os
import time
from urllib.parse import urlencode

from server_probe import report, wait_until_idle

# A model that trains in a fraction of a second and still tells the story (CLI names, as in a shared link).
SMALL = {"d-in": 16, "hidden": 16, "d-out": 16, "n-samples": 256, "n-eval": 64, "pretrain-epochs": 15, "epochs": 15,
         "batch-size": 32, "seed": 7}
PAGES = {"Home": "", "Playground": "Playground", "Parameters": "Parameters", "Spectrum": "Spectrum", "Runs": "Runs",
         "Compare": "Compare", "Inspector": "Inspector"}
CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
    title: (el.layout.title.text ?? "").replace(/<[^>]+>/g, ""),
    data: el.data.map(t => ({name: t.name, y: Array.from(t.y ?? [])}))}))"""


def settle(page, timeout: float = 300) -> None:
    """Wait until the page has a title, the script run is over (Streamlit's running indicator gone) and the
    browser is idle (the first chart on a page loads Plotly, which keeps the browser busy for a while)."""
    page.locator("h1").first.wait_for()
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet_since = None if running else (quiet_since or time.monotonic())
        if quiet_since and time.monotonic() - quiet_since > 0.4:
            page.evaluate("() => new Promise(done => requestIdleCallback(done, {timeout: 10000}))")
            return
        page.wait_for_timeout(50)
    raise AssertionError("the app kept running")


def screenshot(page, name: str) -> None:
    """A full-page screenshot: Streamlit scrolls inside its own container, so grow the viewport first."""
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"] > *, [data-testid="stMainBlockContainer"], [data-testid="stSidebarContent"]')]
        .map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": 1400, "height": max(900, height + 80)})
    page.wait_for_timeout(400)  # let the charts redraw at the new size
    page.screenshot(path=str(page.artifacts / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 900})


def assert_clean(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "the page shows an exception"
    assert not page.console.errors, page.console.errors


def slider(page, label: str):
    return page.locator(f'[data-testid="stSlider"] input[type="range"][aria-label="{label}"]')


def train(page) -> float:
    """Press Train and wait for the finished run's cards and chart; returns the seconds it took."""
    start = time.perf_counter()
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Merge check", exact=False).first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot").first.wait_for()
    elapsed = time.perf_counter() - start
    settle(page)
    return elapsed


def charts(page, need: str | None = None, guard: float = 90) -> dict[str, dict]:
    """The page's Plotly charts by title, once every chart element Streamlit placed has been drawn by Plotly
    (on a busy machine that can come well after the script run ends) and, with `need`, once a chart whose title
    starts with it is there; polled, with `guard` seconds only against a hang."""
    deadline = time.monotonic() + guard
    while True:
        placed = page.locator('[data-testid="stPlotlyChart"]').count()
        drawn = {c["title"]: c for c in page.evaluate(CHARTS_JS)}
        if len(drawn) >= placed and (need is None or any(t.startswith(need) for t in drawn)):
            return drawn
        assert time.monotonic() < deadline, f"charts not drawn after {guard:.0f} s: {list(drawn)}, {placed} placed"
        page.wait_for_timeout(100)


def held_out(chart: dict, phase: str) -> list[float]:
    return next(t["y"] for t in chart["data"] if t["name"] == f"{phase}, held-out")


def nav(page, name: str) -> None:
    """Switch page through the sidebar, keeping the session (a fresh URL would start a new one)."""
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=name).click()
    page.wait_for_url(f"**/{PAGES[name]}*")
    settle(page)


def test_cold_time_to_plots_for_the_default_preset(server, page):
    page.goto(f"{server}/Playground")
    settle(page)
    seconds = train(page)
    screenshot(page, "playground-default")
    detail = page.get_by_text("Device:").first.inner_text().split("Device:")[-1].strip()
    report(page.artifacts, f"cold time to plots, default preset: {seconds:.2f} s ({os.cpu_count()} CPUs; {detail})")
    assert_clean(page)


def test_every_page_loads_cleanly(server, page):
    for name, path in PAGES.items():
        page.goto(f"{server}/{path}")
        settle(page)
        assert page.locator("h1").first.inner_text().strip() in ("LoRA Explorer", name)
        screenshot(page, f"page-{name.lower()}-fresh")
        assert_clean(page)


def test_move_rank_train_and_see_the_loss_fall_then_visit_every_page(server, page):
    page.goto(f"{server}/Playground?{urlencode(SMALL)}")
    settle(page)
    rank = slider(page, "Rank r")
    before = int(rank.input_value())
    rank.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**rank={before + 1}*")
    settle(page)
    assert int(rank.input_value()) == before + 1
    train(page)
    loss = next(c for t, c in charts(page).items() if t.startswith("Loss"))
    pre, fine = held_out(loss, "pretraining"), held_out(loss, "fine-tuning")
    assert len(pre) == SMALL["pretrain-epochs"] and len(fine) == SMALL["epochs"]
    assert fine[-1] < fine[0] / 10 and pre[-1] < pre[0] / 10
    screenshot(page, "playground-trained")
    assert_clean(page)
    for name in ("Spectrum", "Runs", "Parameters", "Home"):
        nav(page, name)
        assert page.get_by_text("No run yet").count() == 0
        screenshot(page, f"page-{name.lower()}-after-run")
        assert_clean(page)
    nav(page, "Spectrum")
    titles = list(charts(page))
    assert "layer1: singular values of ΔW" in titles and "layer2: singular values of the weight" in titles


def test_a_shared_link_restores_its_settings(server, page):
    link = {"rank": 3, "alpha": 6, "shift": "low_rank", "shift-rank": 2, "shift-scale": 0.5, "d-in": 32}
    page.goto(f"{server}/Playground?{urlencode(link)}")
    settle(page)
    assert slider(page, "Rank r").input_value() == "3"
    assert float(slider(page, "Alpha α").input_value()) == 6.0
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.locator('input[role="combobox"][aria-label="Shift"]').input_value() == "low-rank"
    assert sidebar.get_by_role("spinbutton", name="Shift rank").input_value() == "2"
    assert sidebar.get_by_role("spinbutton", name="Shift size").input_value() == "0.5"
    assert page.locator('[data-testid="stAlertContentWarning"]').count() == 0
    screenshot(page, "playground-shared-link")
    assert_clean(page)


def test_bad_link_values_are_named_in_a_warning(server, page):
    page.goto(f"{server}/Playground?rank=-3&alpha=nan&lr=fast&epochs=%3Cb%3Ebold%3C%2Fb%3E")
    settle(page)
    warnings = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
    text = " ".join(warnings).replace("\u200b", "")  # plain() breaks links with zero-width spaces
    for named in ("rank=-3", "alpha=nan", "lr=fast", "epochs=<b>bold</b>"):
        assert named in text, text
    assert page.locator('[data-testid="stMain"] b', has_text="bold").count() == 0  # shown as text, not markup
    screenshot(page, "playground-bad-link")
    assert_clean(page)


def test_moving_a_slider_during_training_stops_the_run(server, page):
    page.goto(f"{server}/Playground?pretrain-epochs=3&epochs=5000&seed=11")
    settle(page)
    page.get_by_role("button", name="Train").click()
    page.locator('[data-testid="stProgress"]').filter(has_text="fine-tuning").wait_for(timeout=60_000)
    rank = slider(page, "Rank r")
    rank.focus()
    page.keyboard.press("ArrowRight")
    page.locator('[data-testid="stProgress"]').wait_for(state="detached", timeout=60_000)
    settle(page)
    seconds = wait_until_idle(server.pid)  # fails only if the old run still trains a minute later
    report(page.artifacts, f"moved slider: the server went idle {seconds:.2f} s after the progress bar went")
    assert page.get_by_text("No run yet").count() == 1
    assert_clean(page)


def test_tick_dora_train_and_see_its_full_rank_change_on_the_spectrum(server, page):
    page.goto(f"{server}/Playground?{urlencode({**SMALL, 'rank': 2, 'seed': 8})}")
    settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text("instead of", exact=False).count() >= 1  # rsLoRA's line of maths
    sidebar.get_by_text("DoRA", exact=True).click()  # the checkbox's label
    page.wait_for_url("**use-dora=true*")
    settle(page)
    train(page)
    assert page.get_by_text("LoRA + DoRA on the autograd path", exact=False).count() == 1
    screenshot(page, "playground-dora")
    nav(page, "Spectrum")
    assert page.get_by_text("non-zero singular values of 16 possible", exact=False).count() == 2  # both layers
    delta = charts(page, need="layer1: singular values of ΔW")["layer1: singular values of ΔW"]
    factored = next(t["y"] for t in delta["data"] if t["name"].startswith("s·B·A from the factors"))
    assert len(factored) == 2
    screenshot(page, "spectrum-dora")
    assert_clean(page)


def test_compare_a_grid_in_the_browser(server, page):
    grid = {"methods": "lora,rslora,full", "ranks": "1,2,4", "alphas": "1,8", "shift": "low_rank", "shift-rank": 3}
    page.goto(f"{server}/Compare?{urlencode({**SMALL, **grid})}")
    settle(page)
    assert page.get_by_text("13 members", exact=False).count() == 1
    page.get_by_role("button", name="Run").click()
    page.get_by_text("members in", exact=False).first.wait_for(timeout=120_000)
    settle(page)
    figs = charts(page)
    by_rank = figs["Final loss against rank, and the best any adapter of that rank could do"]
    names = [t["name"] for t in by_rank["data"]]
    assert {"LoRA α=1", "rsLoRA α=8", "floor: lower bound with 2r directions"} <= set(names)
    assert all(len(t["y"]) == 3 for t in by_rank["data"] if t["name"] != "full fine-tuning")
    assert "Final loss over rank × α: α/r against α/√r" in figs
    screenshot(page, "compare")
    assert_clean(page)


def test_upload_an_adapter_to_the_inspector(server, page, tmp_path):
    import subprocess
    import sys

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
    figs = charts(page)
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
    nav(page, "Compare")  # the session's settings (the digits) with the default grid
    page.get_by_role("button", name="Run").click()
    page.get_by_text("members in", exact=False).first.wait_for(timeout=120_000)
    settle(page)
    by_rank = charts(page, need="Held-out accuracy of the merged model")[
        "Held-out accuracy of the merged model against rank"]
    shifted = next(t["y"] for t in by_rank["data"] if t["name"] == "LoRA α=1, shifted")
    assert len(shifted) == 4 and shifted[-1] > shifted[0]  # ranks 1, 2, 4, 8: more rank, more recovered
    screenshot(page, "compare-digits")
    assert_clean(page)
