"""`python -m lora_core`: the flags, the JSON contract, PEFT-format adapters, and one-line errors."""

import json
import subprocess
import sys

import pytest
import torch

from lora_core.cli.main import main
from lora_core.tasks.linear_model import TwoLayerLinear

SMALL = ["--n-samples", "256", "--n-eval", "128", "--d-in", "12", "--hidden", "10", "--d-out", "8",
         "--pretrain-epochs", "15", "--epochs", "15", "--batch-size", "32", "--device", "cpu"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lora_core", *args], capture_output=True, text=True, timeout=300)


def test_json_to_stdout_has_the_contract_keys():
    proc = run_cli(*SMALL, "--rank", "2", "--alpha", "4", "--shift", "low_rank", "--shift-rank", "2", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["config"]["rank"] == 2 and data["config"]["shift_rank"] == 2 and data["config"]["alpha"] == 4.0
    assert data["status"] == "ok" and data["device"] == "cpu" and data["path"] in ("fast", "autograd")
    assert set(data["history"]) == {"pretrain", "finetune"}
    assert len(data["history"]["finetune"]["train_loss"]) == 15 and len(data["history"]["finetune"]["eval_loss"]) == 15
    assert set(data["losses"]) == {"base_on_original", "base_on_shifted", "adapter_on_shifted", "merged_on_shifted",
                                   "merged_on_original"}  # the last: forgetting (issue 9)
    assert data["merge_max_abs_diff"] < 1e-3
    assert data["params"]["lora_trainable"] == (12 + 10) * 2 + (10 + 8) * 2
    assert data["params"]["full_trainable"] == 12 * 10 + 10 * 8
    assert [layer["name"] for layer in data["params"]["layers"]] == ["layer1", "layer2"]
    assert set(data["params"]["layers"][0]) == {"name", "d_in", "d_out", "lora", "full", "magnitude", "bias"}
    assert data["params"]["layers"][0]["magnitude"] == 0  # DoRA only
    for spec in data["spectra"].values():
        assert set(spec) == {"delta_factored", "delta_merged", "weight_before", "weight_after"}
        assert len(spec["delta_factored"]) == 2
    assert set(data["timings"]) >= {"pretrain_s", "finetune_s", "analysis_s"}
    assert "finetune epoch   15/15" in proc.stderr  # progress goes to stderr


def test_saved_adapter_loads_in_peft_and_matches(tmp_path):
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file
    out = tmp_path / "adapter"
    assert main([*SMALL, "--rank", "2", "--alpha", "3", "--json", str(tmp_path / "r.json"),
                 "--save-adapter", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors",
                                               "base_model.safetensors"}
    result = json.loads((tmp_path / "r.json").read_text())
    base = TwoLayerLinear(12, 10, 8)
    base.load_state_dict(load_file(str(out / "base_model.safetensors")))
    model = peft.PeftModel.from_pretrained(base, str(out))
    assert model.base_model.model.layer1.scaling["default"] == 1.5
    # the PEFT model's merged ΔW has the spectrum our run reported
    delta = model.base_model.model.layer2.get_delta_weight("default")
    torch.testing.assert_close(torch.linalg.svdvals(delta)[:2],
                               torch.tensor(result["spectra"]["layer2"]["delta_factored"]), rtol=1e-4, atol=1e-6)
    merged = model.merge_and_unload()
    svd_after = torch.linalg.svdvals(merged.layer1.weight.detach().double())
    torch.testing.assert_close(svd_after, torch.tensor(result["spectra"]["layer1"]["weight_after"],
                                                       dtype=torch.float64), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("args, words", [
    (["--rank", "-1"], "rank must be"), (["--rank", "11"], "smallest dimension"), (["--alpha", "nan"], "alpha"),
    (["--lr", "0"], "lr"), (["--shift", "rotate"], "shift must be one of"), (["--rank", "two"], "rank"),
    (["--unknown-flag", "1"], "unrecognized"), (["--shift", "low_rank", "--shift-rank", "9"], "shift_rank"),
    (["--preset", "huge"], "invalid choice"), (["--n-samples", "0"], "n_samples"),
    (["--method", "full", "--save-adapter", "x"], "needs --method lora"), (["--device", "tpu"], "device"),
    (["--n-samples", "9000000", "--d-in", "9000"], "GiB"), (["--shift-scale=-inf"], "shift_scale"),
    (["--alpha", "1e39"], "alpha must be"), (["--lr", "1e39"], "lr must be"),
    (["--shift-scale", "1e39"], "shift_scale"),
    (["--rank", "1" + "0" * 400], "rank must be"),
    (["--json", "/no/such/folder/result.json"], "--json /no/such/folder/result.json: cannot write"),
    (["--json", "/"], "--json /: cannot write"), (["--json", "/dev/full"], "--json /dev/full: cannot write"),
    (["--save-adapter", ""], "--save-adapter needs a folder name"),
    (["--save-adapter", "/dev/null"], "exists and is not a folder"),
])
def test_bad_input_exits_2_with_one_line(args, words, capsys):
    try:
        code = main([*SMALL, *args])
    except SystemExit as stop:  # argparse's own errors exit directly
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert captured.out == ""


def test_bad_input_in_a_real_process_prints_no_traceback():
    proc = run_cli(*SMALL, "--alpha", "-3")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: alpha must be a finite number greater than 0 and at most 3.4e+38, got -3\n"


def test_a_gpu_out_of_memory_is_one_line_saying_what_to_change(monkeypatch, capsys):
    import torch

    from lora_core.cli import run_command as cli

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    monkeypatch.setattr(cli, "run_experiment", out_of_memory)
    assert main([*SMALL]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "GPU ran out of memory" in err and "--device cpu" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--rank", "0"], "error: rank must be an integer from 1 to 65,536, got 0"),
    (["--alpha", "1e-320"], "error: alpha 1e-320 is too small to change anything"),
    (["sweep", "--methods", "lora,nope"], "error: unknown method(s) nope; allowed: lora"),
    (["sweep", "--ranks", "1,x"], "error: --ranks must be a comma-separated list of integers"),
])
def test_a_bad_flag_is_refused_before_torch_is_imported(argv, message):
    probe = ("import runpy, sys\n"
             f"sys.argv = ['lora_core', *{argv!r}]\n"
             "try:\n    runpy.run_module('lora_core', run_name='__main__')\n"
             "except SystemExit as stop:\n    print(stop.code, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["2", "False"], out
    assert out.stderr.startswith(message) and len(out.stderr.splitlines()) == 1, out.stderr


@pytest.mark.parametrize("where", ["/proc/lora-explorer-x", "below-a-file"])
def test_save_adapter_to_a_place_that_cannot_be_written_is_refused_before_the_run(tmp_path, where, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    folder = str(blocker / "adapter") if where == "below-a-file" else where
    code = main([*SMALL, "--save-adapter", folder])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write there" in err and len(err.splitlines()) == 1
    assert "pretrain" not in err  # no epoch ran
