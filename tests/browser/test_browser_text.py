"""The text task in headless Chromium: a small transformer trained from a link, its per-character loss and
accuracy, the text both models write read back from the page; then Compare's placements at one budget."""

from __future__ import annotations

from urllib.parse import urlencode

from page_tools import assert_clean, charts, open_grid, run_grid, screenshot, settle, train
from server_probe import report

# A transformer that trains in seconds here (the preset's is about 25 s), the same as the AppTest's.
QUICK = {"preset": "text", "hidden": 32, "blocks": 1, "heads": 2, "context": 24, "n-samples": 512, "n-eval": 64,
         "pretrain-epochs": 6, "epochs": 3, "lr": 0.01, "rank": 4, "alpha": 8, "targets": "q,v,o,fc1", "seed": 303}


def test_train_the_transformer_and_read_both_models_text(server, page):
    page.goto(f"{server}/Playground?{urlencode(QUICK)}")
    settle(page)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text("Target modules", exact=True).count() == 1
    seconds = train(page)
    curves = charts(page, need="Loss and accuracy per epoch")["Loss and accuracy per epoch"]
    pre = next(t["y"] for t in curves["data"] if t["name"] == "pretraining, held-out")
    assert len(pre) == 6 and pre[-1] < pre[0]
    blocks = page.locator('[data-testid="stCode"]')  # the share panel's link is one too, above
    texts = [blocks.nth(i).inner_text() for i in range(blocks.count())][-6:]
    assert len(texts) == 6  # two prompts, each with the base's and the fine-tuned model's continuation
    assert texts[0].strip() and texts[1] != texts[2]  # the two models write differently
    page.get_by_text("The same prompts, continued", exact=False).scroll_into_view_if_needed()
    screenshot(page, "playground-text")
    report(page.artifacts, f"small text run in the browser: {seconds:.2f} s")
    assert_clean(page)


def test_compare_the_placements_at_one_budget(server, page):
    grid = {"methods": "lora", "alphas": 8, "placements": "q,v;attention;mlp;all", "budget": 1500}
    open_grid(page, server, {**QUICK, **grid}, 4)
    run_grid(page)
    settle(page)
    title = "At most 1,500 trainable parameters: where to put them"
    bars = charts(page, need=title)[title]
    assert [t["name"] for t in bars["data"]] == ["on the shifted text", "on the original text (forgetting)"]
    assert len(bars["data"][0]["y"]) == 4
    assert page.get_by_text("Lowest loss on the shifted text", exact=False).count() == 1
    screenshot(page, "compare-text-budget")
    assert_clean(page)
