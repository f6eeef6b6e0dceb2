"""The cache of pretrained bases: what it keys on, what it skips, and how it recovers from damage."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lora_core import cache, experiment
from lora_core.settings.config import FIELDS, ConfigError, preset
from lora_core.tasks.registry import kind

SMALL = dict(n_samples=256, n_eval=64, d_in=12, hidden=10, d_out=8, pretrain_epochs=6, epochs=4, batch_size=32,
             lr=1e-2, device="cpu")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty cache folder, an empty memory cache, and a count of real pretrainings."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    cache.clear_memory()
    calls = []
    real = experiment.pretrain

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "pretrain", counting)
    yield SimpleNamespace(path=tmp_path, calls=calls)
    cache.clear_memory()


def files(folder):
    return sorted(folder.path.glob("*.safetensors"))


def test_changing_rank_alpha_method_or_shift_does_not_pretrain_again(folder):
    first = experiment.run_experiment(preset("default", **SMALL, rank=1, alpha=1.0))
    assert not first.pretrain_cached and len(folder.calls) == 1 and len(files(folder)) == 1
    for change in [dict(rank=2, alpha=4.0), dict(method="full"), dict(shift="low_rank", shift_rank=2),
                   dict(epochs=2, init="gaussian")]:
        again = experiment.run_experiment(preset("default", **{**SMALL, **change}))
        assert again.pretrain_cached and again.status == "ok"
        assert again.history["pretrain"] == first.history["pretrain"]
        assert again.losses["base_on_original"] == first.losses["base_on_original"]  # the very same weights
    assert len(folder.calls) == 1 and len(files(folder)) == 1


def test_a_setting_that_changes_pretraining_pretrains(folder):
    experiment.run_experiment(preset("default", **SMALL))
    for change in [dict(seed=1), dict(pretrain_epochs=3), dict(lr=5e-3), dict(hidden=9), dict(dtype="float64")]:
        assert not experiment.run_experiment(preset("default", **{**SMALL, **change})).pretrain_cached
    assert len(folder.calls) == 6 and len(files(folder)) == 6


def test_disk_cache_survives_a_new_process(folder):
    first = experiment.run_experiment(preset("default", **SMALL))
    cache.clear_memory()  # what a new process starts with
    again = experiment.run_experiment(preset("default", **SMALL, rank=3))
    assert again.pretrain_cached and len(folder.calls) == 1
    assert again.history["pretrain"] == first.history["pretrain"]
    assert again.losses["base_on_shifted"] == first.losses["base_on_shifted"]


def test_cached_history_is_replayed_to_the_callback_and_can_cancel(folder):
    experiment.run_experiment(preset("default", **SMALL))
    seen = []
    result = experiment.run_experiment(preset("default", **SMALL, rank=2), on_progress=seen.append)
    assert result.pretrain_cached
    pretrain = [p for p in seen if p.phase == "pretrain"]
    assert [p.epoch for p in pretrain] == list(range(1, 7)) and {p.epochs for p in pretrain} == {6}
    assert [p.train_loss for p in pretrain] == result.history["pretrain"].train_loss
    assert [p.phase for p in seen].count("finetune") == 4

    cancelled = experiment.run_experiment(preset("default", **SMALL), on_progress=lambda p: p.epoch < 2)
    assert cancelled.status == "cancelled" and len(cancelled.history["pretrain"].train_loss) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong_key", "wrong_shape", "nan"])
def test_a_corrupt_or_stale_file_is_rebuilt(folder, damage):
    first = experiment.run_experiment(preset("default", **SMALL))
    (path,) = files(folder)
    data = path.read_bytes()
    with safe_open(str(path), framework="pt") as f:
        metadata, weights = f.metadata(), {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong_key":
        key = json.loads(metadata["key"])
        key["format"] = -1  # an entry written by another version of the cache
        save_file(weights, str(path), metadata={**metadata, "key": json.dumps(key, sort_keys=True)})
    elif damage == "wrong_shape":
        save_file({k: v[:, :3].contiguous() for k, v in weights.items()}, str(path), metadata=metadata)
    else:
        save_file({k: torch.full_like(v, float("nan")) for k, v in weights.items()}, str(path), metadata=metadata)
    cache.clear_memory()
    again = experiment.run_experiment(preset("default", **SMALL, rank=2))
    assert not again.pretrain_cached and again.status == "ok" and len(folder.calls) == 2
    assert again.history["pretrain"] == first.history["pretrain"]  # rebuilt: the same, deterministic base
    with safe_open(str(path), framework="pt") as f:  # and stored intact again
        assert f.metadata() == metadata
        assert all(torch.equal(f.get_tensor(k), v) for k, v in weights.items())
    cache.clear_memory()
    assert experiment.run_experiment(preset("default", **SMALL, rank=3)).pretrain_cached


def test_cancelled_or_diverged_pretraining_is_not_cached(folder):
    result = experiment.run_experiment(preset("default", **SMALL),
                                       on_progress=lambda p: not (p.phase == "pretrain" and p.epoch == 2))
    assert result.status == "cancelled" and files(folder) == []
    diverged = experiment.run_experiment(preset("default", **{**SMALL, "lr": 1e10, "dtype": "float32"}))
    assert diverged.status == "diverged" and files(folder) == []
    again = experiment.run_experiment(preset("default", **SMALL))
    assert not again.pretrain_cached and len(files(folder)) == 1


def test_cache_off_keeps_bases_in_memory_only(folder, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    assert cache.cache_dir() is None
    experiment.run_experiment(preset("default", **SMALL))
    assert experiment.run_experiment(preset("default", **SMALL, rank=2)).pretrain_cached
    assert files(folder) == [] and len(folder.calls) == 1


def test_an_unwritable_folder_only_costs_the_disk_copy(folder, monkeypatch):
    blocker = folder.path / "file-in-the-way"
    blocker.write_text("")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))  # cannot be created: its parent is a file
    assert experiment.run_experiment(preset("default", **SMALL)).status == "ok"
    assert experiment.run_experiment(preset("default", **SMALL, rank=2)).pretrain_cached


def test_default_folder_and_env_var(monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    assert str(cache.cache_dir()).endswith(".cache/lora-explorer")
    monkeypatch.setenv(cache.CACHE_ENV, "/tmp/somewhere")
    assert str(cache.cache_dir()) == "/tmp/somewhere"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_fifo_or_folder_where_a_cache_file_belongs_is_not_waited_on_and_is_repaired(folder, kind):
    config = preset("default", **SMALL)
    name = cache.key_name(cache.pretrain_key(config, torch.device("cpu"), experiment.pretrain))
    where = folder.path / f"{name}.safetensors"
    os.mkfifo(where) if kind == "fifo" else (where / "inner").mkdir(parents=True)
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=experiment.run_experiment(config)), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the run waited on the cache file"
    assert outcome["result"].status == "ok" and not outcome["result"].pretrain_cached
    assert where.is_file()  # the damaged entry, whatever it was, gave way to a fresh base
    assert experiment.run_experiment(config.replace(rank=3)).pretrain_cached  # from memory
    cache.clear_memory()
    assert experiment.run_experiment(config.replace(rank=3)).pretrain_cached and len(folder.calls) == 1  # from disk


def test_a_home_folder_that_does_not_exist_falls_back_to_memory_with_one_plain_line(folder, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, "~nosuchuser-lora-explorer/x")
    cache._warn_once.cache_clear()
    assert cache.cache_dir() is None and cache.cache_dir() is None
    assert experiment.run_experiment(preset("default", **SMALL)).status == "ok"
    assert experiment.run_experiment(preset("default", **SMALL, rank=2)).pretrain_cached
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no such home folder" in err[0] and err[0].startswith("lora-explorer: "), err


@pytest.mark.parametrize("where", ["a regular file", "below a file", "under /proc"])
def test_an_unusable_cache_folder_is_reported_once_in_one_line_and_runs_go_on(folder, monkeypatch, capsys, where):
    blocker = folder.path / "a-file"
    blocker.write_text("not a folder")
    path = {"a regular file": blocker, "below a file": blocker / "cache",
            "under /proc": Path("/proc/lora-explorer-test-cache")}[where]
    monkeypatch.setenv(cache.CACHE_ENV, str(path))
    cache._warn_once.cache_clear()
    for seed in (1, 2):  # two bases that cannot be stored: still one line
        assert experiment.run_experiment(preset("default", **SMALL, seed=seed)).status == "ok"
    assert experiment.run_experiment(preset("default", **SMALL, seed=2, rank=2)).pretrain_cached  # memory still
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(path) in err[0] and "kept in memory only" in err[0], err


def _another_value(name, value):
    """A different valid value of a field (an available device for `device`)."""
    choices = FIELDS[name].metadata["choices"]
    if choices:
        if name == "device":
            return "cpu" if value != "cpu" else "auto"
        return next(c for c in choices if c != value)
    if FIELDS[name].type == "bool":
        return not value
    return value + 1 if FIELDS[name].type == "int" else value * 2


TINY = {"linear": dict(n_samples=48, n_eval=16, d_in=6, hidden=5, d_out=4, pretrain_epochs=2, epochs=1,
                       batch_size=16, rank=1, shift_rank=1, device="cpu"),
        # held_out: the one digits shift that changes the original task, so that its count matters
        "digits": dict(task="digits", digits_shift="held_out", hidden=5, pretrain_epochs=1, epochs=1, batch_size=256,
                       rank=1, device="cpu")}


@pytest.mark.parametrize("task", list(TINY))
@pytest.mark.parametrize("name", list(FIELDS))
def test_every_setting_that_changes_the_pretrained_base_is_in_its_key(name, task):
    """Change one setting at a time and pretrain for real: whenever the base comes out different, the cache key
    must differ too, or a future setting would silently reuse a stale base. Nothing here lists the fields."""
    before = preset("default", **TINY[task])
    try:
        after = before.replace(**{name: _another_value(name, getattr(before, name))})
    except ConfigError:  # e.g. the linear task's shift kinds: another task's value cannot run with this one
        pytest.skip(f"{name} has no other value that runs with task {task}")

    def base_of(config):
        device = torch.device("cpu")
        original, _ = kind(config).make_tasks(config, device)
        _, history, model = experiment.pretrain(config, original, device)
        return history, [p.detach().clone() for p in model.parameters()], cache.pretrain_key(config, device,
                                                                                             experiment.pretrain)

    history_a, weights_a, key_a = base_of(before)
    history_b, weights_b, key_b = base_of(after)
    same_base = history_a == history_b and all(a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
                                               for a, b in zip(weights_a, weights_b, strict=True))
    if not same_base:
        assert key_a != key_b, f"{name} changes the pretrained base but is not in the cache key"
    else:
        assert key_a == key_b or name == "device", f"{name} does not change the base, yet splits the cache"
