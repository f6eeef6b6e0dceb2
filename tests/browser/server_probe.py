"""What a test can learn of a server process from /proc without timing it: its CPU time, whether it has gone
idle (polled, with a generous guard instead of a deadline that a busy machine could miss), and where the
measured seconds are reported (test-artifacts/timings.txt), never asserted."""

from __future__ import annotations

import os
import time
from pathlib import Path

IDLE_CPU_SHARE = 0.15  # a server with no run uses a few % of a core; one still training uses far more, even
#                        on a machine where another process holds a core (it still gets about half of one)
GUARD_S = 60.0  # 10x and more what stopping takes here: only a hang reaches it


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_busy(pid: int, cpu: float = 0.5, guard: float = GUARD_S) -> float:
    """Wait until `pid` has used `cpu` more CPU seconds (its run is really computing); the seconds it took."""
    start, begun = cpu_seconds(pid), time.monotonic()
    while cpu_seconds(pid) - start < cpu:
        assert time.monotonic() - begun < guard, f"the server used under {cpu} s of CPU in {guard:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - begun


def wait_until_idle(pid: int, window: float = 1.0, guard: float = GUARD_S) -> float:
    """Wait until `pid` uses under IDLE_CPU_SHARE of a core over a whole `window`; the seconds until that
    window began (about how long the work went on). Fails only if it is still busy after `guard` seconds."""
    begun = time.monotonic()
    while True:
        at, used = time.monotonic(), cpu_seconds(pid)
        time.sleep(window)
        share = (cpu_seconds(pid) - used) / (time.monotonic() - at)
        if share < IDLE_CPU_SHARE:
            return at - begun
        assert time.monotonic() - begun < guard, f"the server still uses {share:.0%} of a CPU after {guard:.0f} s"


def report(artifacts: Path, line: str) -> None:
    """Print a measured figure and append it to test-artifacts/timings.txt (for the README, not an assertion)."""
    print(line)
    artifacts.mkdir(parents=True, exist_ok=True)
    with (artifacts / "timings.txt").open("a") as out:
        out.write(line + "\n")
