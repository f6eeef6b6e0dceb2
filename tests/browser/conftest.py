"""Real-browser tests: a Streamlit server on a free port and Debian's headless Chromium driven by Playwright.

Needs `/usr/bin/chromium` (Debian: `apt-get install -y chromium`; another binary via $CHROMIUM), never a
browser downloaded by Playwright itself. Screenshots and the server's log go to test-artifacts/ (or $TEST_ARTIFACTS).
Select these tests with `pytest tests/browser` or `-m browser`; skip them with `-m "not browser"`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lora_core.cache import CACHE_ENV
from tests.artifacts import ARTIFACTS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Opening a deep link (/Playground) makes the frontend probe /Playground/_stcore/... first: two harmless 404s.
HARMLESS = ("/_stcore/health", "/_stcore/host-config")


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(str):
    """The app's base URL, with the server's process id as `.pid`."""

    pid: int


def start_server(cache_dir, log_name: str = "streamlit.log"):
    """Start `streamlit run app.py` on a free loopback port; (base URL with `.pid`, process, log file)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, CACHE_ENV: str(cache_dir)}
    log = open(ARTIFACTS / log_name, "w")  # noqa: SIM115 - the caller closes it
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = Server(f"http://127.0.0.1:{port}")
    url.pid = proc.pid
    deadline = time.monotonic() + 180  # a guard: streamlit starts in a few seconds, far slower when busy
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).status == 200:
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"streamlit did not start; see {ARTIFACTS / log_name}")
            time.sleep(0.2)
    return url, proc, log


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The app's base URL (a str with `.pid`); the server's log is test-artifacts/streamlit.log.

    The server gets an empty cache of pretrained bases of its own, so that its first run is truly cold.
    """
    url, proc, log = start_server(tmp_path_factory.mktemp("server-base-cache"))
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    text = (ARTIFACTS / "streamlit.log").read_text()
    assert "Traceback" not in text, f"the server logged an exception; see {ARTIFACTS / 'streamlit.log'}"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        why = f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium; or set $CHROMIUM)"
        if os.environ.get("REQUIRE_BROWSER"):  # scripts/test.sh (and so CI) must not skip them silently
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """Console errors and uncaught page errors, minus the known harmless deep-link 404s."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def _console(self, msg):
        if msg.type != "error":
            return
        where = (msg.location or {}).get("url", "")
        if "404" in msg.text and where.endswith(HARMLESS):
            return
        self.errors.append(f"{msg.text} at {where}")


@pytest.fixture
def page(browser):
    """A fresh browser context (a new Streamlit session); `page.console` watches its console, `page.artifacts`
    is where screenshots go."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(90_000)  # a guard against a hang: a busy 2-core machine can be 5x slower
    p.console = Console(p)
    p.artifacts = ARTIFACTS
    yield p
    context.close()


@pytest.fixture
def launch():
    """start_server, for a test that needs a server of its own (its CPU, its signals, its exit)."""
    return start_server
