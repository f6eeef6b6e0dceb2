"""The Inspector page: AppTest cannot upload, so the page's drawing runs on a report made from bytes here, and
tests/browser uploads through the real file input."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from ui.inspector_view import split_name


def _show_a_transformer_like_adapter() -> None:
    import json

    import torch
    from safetensors.torch import save

    from lora_core.inspector import from_files
    from ui.inspector_page import show

    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(3):
        for name, rank in (("self_attn.q_proj", 4), ("mlp.up_proj", 2)):
            key = f"base_model.model.model.layers.{layer}.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(rank, 16, generator=g)
            tensors[f"{key}.lora_B.weight"] = torch.randn(8, rank, generator=g) * (layer + 1)
    config = json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "rank_pattern": {"up_proj": 2}})
    show(from_files({"adapter_model.safetensors": save(tensors), "adapter_config.json": config.encode()}))


def test_the_page_without_an_upload_says_what_to_do():
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.switch_page("pages/6_Inspector.py").run()
    assert not at.exception and at.info and "safetensors" in at.markdown[0].value


def test_an_adapter_is_drawn_per_layer_with_its_spectra_and_downloads():
    at = AppTest.from_function(_show_a_transformer_like_adapter, default_timeout=60).run()
    assert not at.exception, at.exception
    assert {m.label: m.value for m in at.metric} == {"Modules": "6", "Adapter parameters": f"{3 * (24 * 4 + 24 * 2):,}",
                                                     "Ranks": "2, 4"}
    table = at.dataframe[0].value
    assert len(table) == 6 and set(table["rank"]) == {2, 4} and abs(table["share"].sum() - 1) < 1e-9
    figs = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}
    norms = figs["‖ΔW‖_F per layer"]
    assert {t["name"] for t in norms["data"]} == {"self_attn.q_proj", "mlp.up_proj"}
    q = next(t for t in norms["data"] if t["name"] == "self_attn.q_proj")
    assert q["x"] == [0, 1, 2] and q["y"][2] > q["y"][0]  # B scaled by the layer index + 1
    spectra = figs["Singular values of ΔW = s·B·A"]
    largest = list(table.sort_values("delta_norm", ascending=False)["module"][:3])
    assert [t["name"] for t in spectra["data"]] == [m for m in table["module"] if m in largest]  # 3 largest ΔW
    assert {b.label for b in at.get("download_button")} == {"Download the table (CSV)", "Download the report (JSON)"}


def test_module_names_split_into_layer_and_kind():
    assert split_name("model.layers.7.self_attn.q_proj") == (7, "self_attn.q_proj")
    assert split_name("transformer.h.11.attn.c_attn") == (11, "attn.c_attn")
    assert split_name("layer1") == (None, "layer1")
