"""Settings <-> query parameters, text made safe to show, typed shapes: the app's glue that needs no Streamlit."""

from __future__ import annotations

import subprocess
import sys

from lora_core.settings.config import preset
from ui.settings import parse_params, preset_settings, url_params
from ui.text import parse_shapes, plain


def test_url_round_trip_uses_cli_names_and_only_what_differs_from_the_preset():
    s = {**preset_settings("article"), "rank": 4, "shift": "low_rank", "shift_scale": 0.5}
    params = url_params(s)
    assert params == {"preset": "article", "rank": "4", "shift": "low_rank", "shift-scale": "0.5"}
    assert parse_params(params) == (s, [])
    assert parse_params({"shift_scale": "0.5", "Shift": "low-rank"})[0]["shift"] == "low_rank"


def test_url_values_that_only_work_together_are_accepted_together():
    s, warnings = parse_params({"rank": "40", "d-in": "48", "hidden": "48", "d-out": "48"})
    assert not warnings and s["rank"] == 40
    s, warnings = parse_params({"d-in": "8", "rank": "50"})
    assert s["d_in"] == 8 and s["rank"] == preset("default").rank
    assert len(warnings) == 1 and warnings[0].startswith("rank=50")


def test_plain_text_shows_no_link_and_no_icon():
    import re

    shown = plain("www.example.com/x :material/home: http://a.b c@d.e")
    visible = shown.replace("\u200b", "").replace("\\", "")
    assert visible == "www.example.com/x :material/home: http://a.b c@d.e"  # reads the same
    assert "www." not in shown and "://" not in shown.replace("\\", "") and "@d" not in shown
    assert not re.search(r":[a-z_]+/[a-z_]+:", shown.replace("\\", ""))


def test_plain_text_cannot_inject_markup():
    shown = plain("<b>x</b> [a](javascript:1) $x$ `c`")
    assert "\\<b\\>" in shown and "\\[a\\]" in shown and "\\$" in shown and "\\`" in shown


def test_parse_shapes():
    assert parse_shapes("4096x4096, 12 × 3,bad, 0x5") == ({"your layer 1": (4096, 4096),
                                                              "your layer 2": (12, 3)}, ["bad", "0x5"])




def test_settings_and_text_modules_import_no_streamlit():
    code = "import sys, ui.settings, ui.text; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
