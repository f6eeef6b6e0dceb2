"""The adapter inspector against adapters PEFT itself writes, the project's own, a dense SVD, and bad files."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
import zipfile

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save

from lora_core.cli.main import main
from lora_core.inspector import AdapterError, effective_rank, from_files, from_path, inspect_adapter, rank_for_energy

peft = pytest.importorskip("peft")


class Tiny(nn.Module):
    """Module names like a transformer block's: several projections and an embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 12)
        self.q_proj, self.v_proj, self.up_proj = nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 30)

    def forward(self, x):
        return self.up_proj(self.q_proj(self.embed(x)) + self.v_proj(self.embed(x)))


def peft_folder(tmp_path, **config) -> tuple[object, str]:
    torch.manual_seed(0)
    model = peft.get_peft_model(Tiny(), peft.LoraConfig(target_modules=["q_proj", "v_proj", "up_proj", "embed"],
                                                        **config))
    with torch.no_grad():  # move B (and the embedding's factors) away from zero: ΔW of zeros tells nothing
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(0.2 * torch.randn_like(p))
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    return model, str(folder)


@pytest.mark.parametrize("config", [dict(r=4, lora_alpha=8),
                                    dict(r=4, lora_alpha=8, rank_pattern={"v_proj": 2}, alpha_pattern={"up_proj": 3}),
                                    dict(r=3, lora_alpha=6, use_rslora=True),
                                    dict(r=2, lora_alpha=2, use_dora=True)])
def test_peft_adapters_read_with_peft_delta_weights(tmp_path, config):
    model, folder = peft_folder(tmp_path, **config)
    report = from_path(folder)
    by_name = {m.module: m for m in report.modules}
    assert set(by_name) == {"embed", "q_proj", "v_proj", "up_proj"}
    for name, m in by_name.items():
        layer = model.base_model.model.get_submodule(name)
        assert m.scaling == pytest.approx(layer.scaling["default"]) and m.rank == layer.r["default"]
        delta = layer.get_delta_weight("default").detach().double()
        dense = torch.linalg.svdvals(delta)[:m.rank]
        assert torch.tensor(m.singular_values) == pytest.approx(dense, rel=1e-4, abs=1e-7)  # from factors, vs dense
        assert m.delta_norm == pytest.approx(torch.linalg.matrix_norm(delta).item(), rel=1e-4)
        assert m.dora == bool(config.get("use_dora")) or name == "embed"
    assert by_name["up_proj"].shape == (30, 12)
    if "rank_pattern" in config:
        assert by_name["v_proj"].rank == 2 and by_name["up_proj"].alpha == 3.0 and by_name["q_proj"].alpha == 8.0
    assert sum(m.share for m in report.modules) == pytest.approx(1.0)
    assert report.assumed == ([] if not config.get("use_dora") else [report.assumed[0]])


def test_without_a_config_rank_comes_from_the_shapes_and_alpha_is_assumed(tmp_path):
    peft_folder(tmp_path, r=4, lora_alpha=8)
    weights = (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    report = inspect_adapter(weights)
    assert {m.rank for m in report.modules} == {4} and {m.scaling for m in report.modules} == {1.0}
    assert any("α = r was assumed" in a for a in report.assumed)


def test_the_projects_own_adapter(tmp_path):
    from lora_core.experiment import run_experiment
    from lora_core.settings.config import preset

    result = run_experiment(preset("default", rank=3, alpha=6.0, epochs=3, pretrain_epochs=3),
                            save_adapter_to=tmp_path / "ours")
    report = from_path(str(tmp_path / "ours"))
    assert [m.module for m in report.modules] == ["layer1", "layer2"]
    for m in report.modules:
        assert m.singular_values == pytest.approx(result.spectra[m.module].delta_factored, rel=1e-5)
        assert m.params == (64 + 64) * 3


def test_effective_rank_and_energy_rank():
    assert effective_rank([2.0, 2.0, 2.0]) == pytest.approx(3.0)
    assert effective_rank([5.0, 0.0]) == pytest.approx(1.0)
    assert rank_for_energy([4.0, 1.0, 0.1], 0.9) == 1 and rank_for_energy([4.0, 1.0, 0.1], 0.99) == 2
    assert rank_for_energy([3.0, 1.0, 0.1], 0.9) == 2  # 9 / 10.01 of the energy is just under 90 %


def _weights(**tensors) -> bytes:
    return save({k: v.contiguous() for k, v in tensors.items()})


@pytest.mark.parametrize("files, words", [
    ({"adapter_model.bin": b"\x80\x04garbage"}, "pickle"),
    ({"adapter_model.safetensors": b"\x80\x02\x8a\x0alooks like a pickle"}, "pickle"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.ones(2, 4),
                                               "a.lora_B.weight": torch.ones(3, 2)})[:40]}, "not a readable"),
    ({"adapter_model.safetensors": b"not a safetensors file at all"}, "not a readable"),
    ({"adapter_model.safetensors": _weights(w=torch.ones(2, 2))}, "no LoRA weights"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.ones(2, 4),
                                               "a.lora_B.weight": torch.ones(3, 5)})}, "do not multiply"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.ones(2, 4)})}, "only one of"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.ones(2, 4),
                                               "a.lora_B.weight": torch.ones(3, 2)}),
      "adapter_config.json": b'{"r": 8}'}, "config says r = 8"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.ones(2, 4),
                                               "a.lora_B.weight": torch.ones(3, 2)}),
      "adapter_config.json": b"{broken"}, "not valid JSON"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.ones(2, 4),
                                               "a.lora_B.weight": torch.ones(3, 2)}),
      "adapter_config.json": b'{"peft_type": "IA3"}'}, "IA3 adapter, not LoRA"),
    ({"adapter_model.safetensors": _weights(**{"a.lora_A.weight": torch.full((2, 4), float("nan")),
                                               "a.lora_B.weight": torch.ones(3, 2)})}, "NaN"),
    ({"notes.txt": b"hello"}, "give one adapter_model.safetensors"),
    ({"adapter.zip": b"PK not really"}, "not a readable .zip"),
])
def test_every_bad_file_is_one_clear_message(files, words):
    with pytest.raises(AdapterError, match=words):
        from_files(files)


def test_a_size_limit_and_a_zip_of_both_files(tmp_path):
    peft_folder(tmp_path, r=2, lora_alpha=4)
    weights = (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()
    with pytest.raises(AdapterError, match="more than the"):
        inspect_adapter(weights, max_bytes=1000)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("adapter/adapter_model.safetensors", weights)
        archive.writestr("adapter/adapter_config.json", (tmp_path / "adapter" / "adapter_config.json").read_text())
    report = from_files({"upload.zip": packed.getvalue()})
    assert {m.scaling for m in report.modules} == {2.0} and not report.assumed  # the config inside was read


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "lora_core", "inspect", *args], capture_output=True, text=True,
                          timeout=120)


def test_inspect_command_writes_json_and_csv(tmp_path):
    _, folder = peft_folder(tmp_path, r=4, lora_alpha=8, rank_pattern={"v_proj": 2})
    proc = _cli(folder, "--json", "-", "--csv", str(tmp_path / "m.csv"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    v_proj = next(m for m in data["modules"] if m["module"] == "v_proj")
    assert v_proj["rank"] == 2 and len(v_proj["singular_values"]) == 2 and v_proj["scaling"] == 4.0
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0].startswith("module,out,in,rank") and len(lines) == 5
    assert "4 modules" in proc.stderr


@pytest.mark.parametrize("make, words", [(lambda p: str(p / "none"), "no such file"),
                                         (lambda p: (p / "x.bin").write_bytes(b"\x80\x04.") and str(p / "x.bin"),
                                          "pickle"),
                                         (lambda p: str(p), "no adapter_model.safetensors")])
def test_inspect_command_refuses_bad_input_with_one_line(tmp_path, make, words, capsys):
    """In this process (a real process's one-line errors: test_cli.py); the exit status is what `main` returns."""
    code = main(["inspect", make(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_nothing_is_written_anywhere(tmp_path, monkeypatch):
    """The report is computed from bytes in memory: no file is opened for writing."""
    import builtins

    peft_folder(tmp_path, r=2, lora_alpha=4)
    files = {p.name: p.read_bytes() for p in (tmp_path / "adapter").iterdir()}
    real_open = builtins.open

    def read_only(file, mode="r", *args, **kwargs):
        assert not any(c in mode for c in "wax+"), f"opened {file} for writing"
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only)
    assert len(from_files(copy.copy(files)).modules) == 4
