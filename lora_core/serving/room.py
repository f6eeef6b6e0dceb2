"""The room's board: every run finished on this server, from every session, kept in SQLite.

One file (WAL mode) is shared by every server process on the machine, so replicas behind a load balancer show
one board and a restart loses nothing; `LORA_EXPLORER_ROOM_DB` names another file, or `off` keeps it in memory.
The board is bounded (the newest MAX_ROWS runs) and a session adds at most RATE_ENTRIES entries a minute (a
sweep is one entry of up to MAX_BATCH rows), so a script cannot flood it. A damaged, locked or unwritable file is
reported once and the board is switched off; the app carries on without it. No Streamlit here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings.config import make_config
from ..settings.results import ExperimentResult
from ..settings.variants import method_name

ROOM_DB_ENV = "LORA_EXPLORER_ROOM_DB"
SCHEMA_VERSION = 2
MAX_ROWS = 10_000
RATE_ENTRIES, RATE_WINDOW_S = 6, 60.0  # per session
MAX_BATCH = 64  # rows one entry may add (a sweep's members)
NICKNAME_MAX = 24
LOG = logging.getLogger("lora_explorer")

# Each migration takes the schema from version i to i + 1 (PRAGMA user_version counts them).
MIGRATIONS = (
    """CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, session TEXT NOT NULL,
       nickname TEXT NOT NULL DEFAULT '', task TEXT NOT NULL, method TEXT NOT NULL, rank INTEGER NOT NULL,
       alpha REAL NOT NULL, params INTEGER NOT NULL, loss REAL, accuracy REAL, floor REAL, source TEXT NOT NULL,
       lesson TEXT NOT NULL DEFAULT '', hidden INTEGER NOT NULL DEFAULT 0);
       CREATE INDEX runs_task ON runs (task);""",
    # 2: each run's settings (a challenge's rules read them), and the facilitator's challenge
    """ALTER TABLE runs ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
       CREATE TABLE challenge (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL, rules TEXT NOT NULL);""",
)


@dataclass(frozen=True)
class BoardRun:
    """One run on the board: what it was and what it reached (the merged model on the shifted task)."""

    task: str
    method: str  # e.g. "LoRA", "LoRA + DoRA", "full fine-tuning"
    rank: int
    alpha: float
    params: int  # trainable parameters
    loss: float | None
    accuracy: float | None  # a classification task's held-out accuracy, 0-1
    floor: float | None
    source: str  # "run", "sweep" or "lesson"
    lesson: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the run's settings


def default_path(cache_folder: Path | None) -> str:
    """$LORA_EXPLORER_ROOM_DB, else room.sqlite3 in the cache folder; ':memory:' for 'off' or no folder."""
    chosen = os.environ.get(ROOM_DB_ENV, "").strip()
    if chosen.lower() == "off" or (not chosen and cache_folder is None):
        return ":memory:"
    return chosen or str(cache_folder / "room.sqlite3")


class RoomStore:
    def __init__(self, path: str, clock=time.monotonic) -> None:
        self.path, self.clock = path, clock
        self.problem: str | None = None  # why the board is off, if it is
        self._lock = threading.Lock()
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._db: sqlite3.Connection | None = None
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=5, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except (sqlite3.Error, OSError) as error:
            self._fail(error)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this app's {SCHEMA_VERSION}")
        for number in range(version, SCHEMA_VERSION):
            self._db.executescript(f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;")

    def _fail(self, error: Exception) -> None:
        if self.problem is None:  # reported once
            self.problem = f"the room's board is off: {self.path}: {error}"
            LOG.warning("lora-explorer: %s", self.problem)
        self._db = None

    @property
    def on(self) -> bool:
        return self._db is not None

    def add(self, session: str, runs: list[BoardRun], nickname: str = "") -> bool:
        """Add one entry (a run, or a sweep's members); False when the session is over its rate or the board
        is off."""
        if not self.on or not runs:
            return False
        now = self.clock()
        with self._lock:
            recent = self._recent[session]
            while recent and now - recent[0] > RATE_WINDOW_S:
                recent.popleft()
            if len(recent) >= RATE_ENTRIES:
                return False
            recent.append(now)
            rows = [(time.time(), session, nickname[:NICKNAME_MAX], r.task, r.method, r.rank, r.alpha, r.params,
                     r.loss, r.accuracy, r.floor, r.source, r.lesson, json.dumps(r.config)) for r in runs[:MAX_BATCH]]
            return self._write(lambda db: (
                db.executemany("INSERT INTO runs (at, session, nickname, task, method, rank, alpha, params, loss, "
                               "accuracy, floor, source, lesson, config) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows),
                db.execute("DELETE FROM runs WHERE id <= (SELECT max(id) FROM runs) - ?", (MAX_ROWS,))))

    def _write(self, action) -> bool:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            action(self._db)
            self._db.execute("COMMIT")
            return True
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):  # nothing to roll back if BEGIN itself failed
                self._db.execute("ROLLBACK")
            if not isinstance(error, sqlite3.OperationalError) or "locked" not in str(error):
                self._fail(error)
            return False

    def version(self) -> tuple:
        """Changes whenever the board does (in any process): what a shared figure is keyed by."""
        if not self.on:
            return ()
        try:
            with self._lock:
                return self._db.execute("SELECT max(id), count(*), sum(hidden), (SELECT at FROM challenge) "
                                        "FROM runs").fetchone()
        except sqlite3.Error as error:
            self._fail(error)
            return ()

    def runs(self, task: str | None = None, lesson: str | None = None) -> list[dict[str, Any]]:
        """The board's runs, newest first; a hidden nickname reads as ''."""
        if not self.on:
            return []
        where, args = ["1"], []
        if task:
            where.append("task = ?")
            args.append(task)
        if lesson:
            where.append("lesson = ?")
            args.append(lesson)
        query = ("SELECT id, at, session, CASE WHEN hidden THEN '' ELSE nickname END AS nickname, task, method, rank, "
                 "alpha, params, loss, accuracy, floor, source, lesson, config FROM runs WHERE "
                 + " AND ".join(where) + " ORDER BY id DESC")
        try:
            with self._lock:
                cursor = self._db.execute(query, args)
                names = [c[0] for c in cursor.description]
                rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            for row in rows:
                row["config"] = json.loads(row["config"])
            return rows
        except sqlite3.Error as error:
            self._fail(error)
            return []

    def challenge(self) -> dict[str, Any] | None:
        """The facilitator's challenge (its rules, as challenge.py reads them), or None."""
        if not self.on:
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT rules FROM challenge WHERE id = 1").fetchone()
        except sqlite3.Error as error:
            self._fail(error)
            return None
        return json.loads(row[0]) if row else None

    def set_challenge(self, rules: dict[str, Any] | None) -> bool:
        """Set (or with None, end) the challenge."""
        with self._lock:
            return self.on and self._write(lambda db: (
                db.execute("DELETE FROM challenge"),
                rules is not None and db.execute("INSERT INTO challenge VALUES (1, ?, ?)",
                                                  (time.time(), json.dumps(rules)))))

    def clear(self) -> bool:
        with self._lock:
            return self.on and self._write(lambda db: db.execute("DELETE FROM runs"))

    def hide_nickname(self, nickname: str) -> bool:
        with self._lock:
            return self.on and self._write(lambda db: db.execute("UPDATE runs SET hidden = 1 WHERE nickname = ?",
                                                                 (nickname,)))


def board_run(result: ExperimentResult, source: str, lesson: str = "") -> BoardRun:
    """A finished run as the board keeps it."""
    config = make_config(**result.config)
    lora = config.method == "lora"
    return BoardRun(config.task, method_name(config), config.rank if lora else 0, config.alpha,
                    result.params.lora_trainable if lora else result.params.full_trainable,
                    result.losses.get("merged_on_shifted"), result.accuracies.get("merged_on_shifted"),
                    result.floor, source, lesson, result.config)
