"""The room's board in SQLite: add, bound, rate limit, restart, two processes writing at once, a corrupt file."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from lora_core.experiment import run_experiment
from lora_core.serving import challenge, room
from lora_core.serving.room import MAX_BATCH, NICKNAME_MAX, RATE_ENTRIES, BoardRun, RoomStore, board_run
from lora_core.settings.config import ConfigError, preset

RUN = BoardRun("linear", "LoRA", 2, 2.0, 256, 0.5, None, 0.1, "run")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_runs_are_added_read_back_newest_first_and_filtered(tmp_path):
    store = RoomStore(str(tmp_path / "room.sqlite3"))
    assert store.add("s1", [RUN], nickname="ada")
    assert store.add("s2", [BoardRun("digits", "full fine-tuning", 0, 2.0, 9000, 0.2, 0.9, None, "lesson",
                                     "forgetting")])
    rows = store.runs()
    assert [r["session"] for r in rows] == ["s2", "s1"] and rows[1]["nickname"] == "ada"
    assert [r["task"] for r in store.runs(task="linear")] == ["linear"]
    assert [r["lesson"] for r in store.runs(lesson="forgetting")] == ["forgetting"]
    assert store.runs(task="digits")[0]["accuracy"] == 0.9


def test_a_session_adds_a_few_entries_a_minute_and_an_entry_is_bounded(tmp_path):
    clock = Clock()
    store = RoomStore(str(tmp_path / "room.sqlite3"), clock=clock)
    assert all(store.add("script", [RUN]) for _ in range(RATE_ENTRIES))
    assert not store.add("script", [RUN])  # over its rate
    assert store.add("someone else", [RUN])
    clock.now = 61.0
    assert store.add("script", [RUN] * 1000)
    assert len(store.runs()) == RATE_ENTRIES + 1 + MAX_BATCH
    assert store.add("nick", [RUN], nickname="x" * 100) and len(store.runs()[0]["nickname"]) == NICKNAME_MAX


def test_the_board_keeps_the_newest_rows_only(tmp_path, monkeypatch):
    monkeypatch.setattr(room, "MAX_ROWS", 5)
    store = RoomStore(str(tmp_path / "room.sqlite3"))
    for i in range(4):
        store.add(f"s{i}", [RUN, RUN])
    assert len(store.runs()) == 5 and store.runs()[-1]["session"] == "s1"


def test_a_restart_loses_nothing_and_clear_and_hide_are_kept(tmp_path):
    path = str(tmp_path / "room.sqlite3")
    RoomStore(path).add("s1", [RUN], nickname="ada")
    again = RoomStore(path)
    assert [r["nickname"] for r in again.runs()] == ["ada"]
    assert again.hide_nickname("ada") and RoomStore(path).runs()[0]["nickname"] == ""
    assert again.clear() and RoomStore(path).runs() == []
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == room.SCHEMA_VERSION


def _writer(path: str, name: str) -> None:
    store = RoomStore(path)
    for i in range(RATE_ENTRIES):
        assert store.add(f"{name}-{i % 3}", [RUN] * 10)


def test_two_processes_write_to_one_board_at_once(tmp_path):
    path = str(tmp_path / "room.sqlite3")
    RoomStore(path)  # the schema first
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(path, name)) for name in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)  # a hang guard
        assert w.exitcode == 0
    rows = RoomStore(path).runs()
    assert len(rows) == 2 * RATE_ENTRIES * 10 and {r["session"][0] for r in rows} == {"a", "b"}


def test_a_corrupt_file_switches_the_board_off_once_and_never_raises(tmp_path, caplog):
    path = tmp_path / "room.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = RoomStore(str(path))
    assert not store.on and "room's board is off" in store.problem
    assert not store.add("s", [RUN]) and store.runs() == [] and store.version() == () and not store.clear()
    assert caplog.text.count("room's board is off") == 1


def test_a_newer_schema_is_refused_not_damaged(tmp_path):
    path = tmp_path / "room.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    store = RoomStore(str(path))
    assert not store.on and "newer" in store.problem


def test_memory_only_and_the_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv(room.ROOM_DB_ENV, "off")
    assert room.default_path(tmp_path) == ":memory:"
    monkeypatch.delenv(room.ROOM_DB_ENV)
    assert room.default_path(tmp_path) == str(tmp_path / "room.sqlite3")
    store = RoomStore(":memory:")
    assert store.add("s", [RUN]) and len(store.runs()) == 1


def test_a_finished_run_as_the_board_keeps_it():
    result = run_experiment(preset("default", d_in=8, hidden=8, d_out=8, n_samples=64, n_eval=16, rank=2,
                                   pretrain_epochs=2, epochs=2, batch_size=16, seed=5100))
    entry = board_run(result, "run")
    assert entry.params == (8 + 8) * 2 * 2 and entry.loss == result.losses["merged_on_shifted"]
    assert entry.method == "LoRA" and entry.rank == 2 and entry.floor == result.floor


def _row(session, at, params, loss, accuracy=None, **config):
    return {"session": session, "at": at, "params": params, "loss": loss, "accuracy": accuracy, "task": "linear",
            "config": {"task": "linear", "shift": "constant", "rank": 1, **config}}


def test_a_challenges_leaderboard_ranks_each_participants_best_run_that_meets_it():
    rules = challenge.rules(preset("default"), "loss_at_most", 0.1, ["rank", "alpha"])
    assert "rank" not in rules["shared"] and rules["shared"]["shift"] == "constant"
    shared = {k: v for k, v in rules["shared"].items() if k != "task"}
    rows = [_row("a", 1.0, 64, 0.05, **shared), _row("a", 2.0, 32, 0.09, **shared),  # a's best: fewer params
            _row("b", 0.5, 32, 0.09, **shared),  # the same score as a's best, earlier: b first
            _row("c", 0.1, 16, 0.5, **shared),  # misses the goal
            _row("d", 0.1, 16, 0.01, **{**shared, "shift": "low_rank"})]  # changed a shared setting
    board = challenge.leaderboard(rules, rows)
    assert [(r["session"], r["params"]) for r in board] == [("b", 32), ("a", 32)]
    with pytest.raises(ConfigError, match="unknown goal"):
        challenge.rules(preset("default"), "fastest", 1, [])
    with pytest.raises(ConfigError, match="not Playground settings"):
        challenge.rules(preset("default"), "loss_at_most", 1, ["device"])


def test_the_challenge_is_kept_with_the_board_and_changes_its_version(tmp_path):
    path = str(tmp_path / "room.sqlite3")
    store = RoomStore(path)
    before = store.version()
    rules = challenge.rules(preset("digits"), "accuracy_within", 2000, ["rank", "layers"])
    assert store.set_challenge(rules) and RoomStore(path).challenge() == rules
    assert store.version() != before
    assert store.set_challenge(None) and RoomStore(path).challenge() is None


def test_a_version_1_board_migrates_and_keeps_its_runs(tmp_path):
    path = tmp_path / "room.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(room.MIGRATIONS[0] + " PRAGMA user_version = 1;")
    db.execute("INSERT INTO runs (at, session, task, method, rank, alpha, params, source) "
               "VALUES (1, 's', 'linear', 'LoRA', 1, 1, 10, 'run')")
    db.commit()
    db.close()
    store = RoomStore(str(path))
    assert store.on and [(r["session"], r["config"]) for r in store.runs()] == [("s", {})]
