"""Streamlit glue the pages share: the Playground's settings and the URL, the shared result cache, live training.

Settings live in `st.session_state["settings"]` (a plain dict of config values plus the preset's name), so
every page sees them and they survive page switches, which discard widget state. The widgets are seeded from
that dict and write back to it; the URL carries the values that differ from the preset, under the CLI's names.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import streamlit as st

from lora_core import figures
from lora_core.config import (
    FIELDS,
    PRESETS,
    SHIFT_LABELS,
    ConfigError,
    ExperimentConfig,
    coerce,
    max_rank,
    preset,
)
from lora_core.experiment import run_experiment
from lora_core.results import PHASES, ExperimentResult, PhaseHistory, Progress
from lora_core.training import warm_up

# The Playground's settings, in the order the URL lists them, with their widget labels.
LABELS = {
    "rank": "Rank r", "alpha": "Alpha α", "shift": "Shift", "shift_scale": "Shift size", "shift_rank": "Shift rank",
    "method": "Method", "init": "Initialisation of A", "d_in": "Input size d_in", "hidden": "Hidden size",
    "d_out": "Output size d_out", "n_samples": "Training samples", "n_eval": "Held-out samples",
    "pretrain_epochs": "Pretraining epochs", "epochs": "Fine-tuning epochs", "batch_size": "Batch size",
    "lr": "Learning rate", "seed": "Seed",
}
PRESET_LABELS = {"default": "Default", "article": "Article"}
ALPHA_RANGE = (0.25, 64.0, 0.25)  # the α slider's span and step; a value from a link outside it widens it
FLOAT_STEPS = {"shift_scale": 0.1, "lr": 1e-3}
CACHE_SIZE = 64  # finished results kept for all sessions
# Below this many weights a matmul is too small to share between cores: one torch thread is several times
# faster (and leaves the other cores to the browser and to other sessions). Measured on a 2-core VM.
DRAW_INTERVAL_S = 0.25  # redraw the live chart at most this often (and at the end of each phase)


PAGES = {  # the sidebar's navigation (Streamlit's own would call the home page "app")
    "app.py": ("Home", ":material/home:"),
    "pages/1_Playground.py": ("Playground", ":material/tune:"),
    "pages/2_Parameters.py": ("Parameters", ":material/functions:"),
    "pages/3_Spectrum.py": ("Spectrum", ":material/stacked_line_chart:"),
    "pages/4_Runs.py": ("Runs", ":material/table_chart:"),
}


def page(title: str) -> None:
    """Every page starts here: wide layout, the tab's title, the navigation."""
    st.set_page_config(page_title=f"{title} · LoRA Explorer", page_icon="🧮", layout="wide")
    st.session_state["active_run"] = None  # any new script run of this session stops a run an older one started
    _warm_up()
    for path, (label, icon) in PAGES.items():
        st.sidebar.page_link(path, label=label, icon=icon)
    st.sidebar.divider()


def settings() -> dict[str, Any]:
    """The session's current Playground settings (the default preset until someone changes them)."""
    if "settings" not in st.session_state:
        st.session_state["settings"] = _preset_settings("default")
    return st.session_state["settings"]


def _preset_settings(name: str) -> dict[str, Any]:
    cfg = preset(name)
    return {"preset": name, **{k: getattr(cfg, k) for k in LABELS}}


# ---- the URL ------------------------------------------------------------------------------------------------

def url_params(s: dict[str, Any]) -> dict[str, str]:
    """The settings as query parameters: the preset, then every value that differs from it (CLI names)."""
    base = _preset_settings(s["preset"])
    out = {"preset": s["preset"]} if s["preset"] != "default" else {}
    out.update({k.replace("_", "-"): str(v) for k, v in s.items() if k in LABELS and v != base[k]})
    return out


def parse_params(params: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Settings from query parameters, and one warning per parameter that was ignored and why."""
    warnings, values = [], {}
    name = params.get("preset", "default")
    if name not in PRESETS:
        warnings.append(f"preset={name}: unknown preset; allowed: {', '.join(PRESETS)}")
        name = "default"
    for key, raw in params.items():
        field = key.strip().lower().replace("-", "_")
        if field == "preset":
            continue
        if field not in LABELS:
            warnings.append(f"{key}={raw}: not a Playground setting; allowed: "
                            + ", ".join(k.replace("_", "-") for k in LABELS) + ", preset")
            continue
        if field == "shift":
            raw = {label: k for k, label in SHIFT_LABELS.items()}.get(raw, raw)
        try:
            values[field] = coerce(field, raw)
        except ConfigError as e:
            warnings.append(f"{key}={raw}: {e}")
    base = preset(name)
    accepted = _accept(base, values)
    for field in values.keys() - accepted.keys():
        try:
            base.replace(**{**accepted, field: values[field]})
        except ConfigError as e:
            warnings.append(f"{field.replace('_', '-')}={_raw(params, field)}: {e}")
    return {**_preset_settings(name), **accepted}, warnings


def _accept(base: ExperimentConfig, values: dict[str, Any]) -> dict[str, Any]:
    """The largest set of values that validates together, found greedily (sizes can make a rank valid)."""
    try:
        base.replace(**values)
        return dict(values)
    except ConfigError:
        pass
    accepted, pending, changed = {}, dict(values), True
    while changed:
        changed = False
        for field, value in list(pending.items()):
            try:
                base.replace(**{**accepted, field: value})
            except ConfigError:
                continue
            accepted[field] = pending.pop(field)
            changed = True
    return accepted


def _raw(params: dict[str, str], field: str) -> str:
    for key, raw in params.items():
        if key.strip().lower().replace("-", "_") == field:
            return raw
    return ""


def plain(text: str, limit: int = 160) -> str:
    """Text from a URL made safe to show in Markdown: no markup, no maths, no links, bounded length."""
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])", r"\\\1", text)


def apply_url() -> None:
    """If the URL is not the one this page last wrote (a shared link, a reload), load settings from it."""
    params = {k: st.query_params[k] for k in st.query_params}
    if params == st.session_state.get("_url_written"):
        return
    if params:
        new, st.session_state["_url_warnings"] = parse_params(params)
        st.session_state["settings"] = new
        for k in list(st.session_state):
            if str(k).startswith("w_"):
                del st.session_state[k]


def write_url() -> None:
    params = url_params(settings())
    if params != {k: st.query_params[k] for k in st.query_params}:
        st.query_params.from_dict(params)
    st.session_state["_url_written"] = params


def show_link_warnings() -> None:
    """One warning naming every value of the last link that was ignored, and why."""
    warnings = st.session_state.get("_url_warnings", [])
    if warnings:
        st.warning("Ignored from the link (the preset's values are used instead):\n"
                   + "\n".join(f"- {plain(w)}" for w in warnings), icon="⚠️")


# ---- the Playground's sidebar -------------------------------------------------------------------------------

def _seed(field: str, value: Any) -> str:
    key = f"w_{field}"
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def _on_preset() -> None:
    st.session_state["settings"] = _preset_settings(st.session_state["w_preset"])
    for field, value in st.session_state["settings"].items():
        st.session_state[f"w_{field}"] = value


def _number(container, field: str) -> Any:
    meta, s = FIELDS[field].metadata, settings()
    key = _seed(field, s[field])
    if FIELDS[field].type == "int":
        return container.number_input(LABELS[field], min_value=int(meta["lo"]), max_value=int(meta["hi"]), step=1,
                                      key=key, help=meta["help"])
    return container.number_input(LABELS[field], step=FLOAT_STEPS.get(field, 0.1), format="%g", key=key,
                                  help=meta["help"])


def _choice(container, field: str, labels: dict[str, str] | None = None) -> str:
    meta = FIELDS[field].metadata
    key = _seed(field, settings()[field])
    return container.selectbox(LABELS[field], meta["choices"], key=key, help=meta["help"],
                               format_func=labels.get if labels else str)


def sidebar() -> ExperimentConfig | None:
    """Draw the Playground's controls, update the settings and the URL; the config, or None after an error."""
    apply_url()
    s = settings()
    top = st.sidebar.container()
    with st.sidebar.expander("Sizes, training and preset"):
        s["preset"] = st.selectbox("Preset", list(PRESETS), key=_seed("preset", s["preset"]),
                                   format_func=PRESET_LABELS.get, on_change=_on_preset,
                                   help="load a preset's values: Default runs in about a second, Article is the "
                                        "article's experiment (1001→1000→1000, minutes on a CPU)")
        for field in ("method", "init"):
            s[field] = _choice(st, field)
        for field in ("d_in", "hidden", "d_out", "n_samples", "n_eval", "pretrain_epochs", "epochs", "batch_size",
                      "lr", "seed"):
            s[field] = _number(st, field)
    with top:
        lo, hi = int(FIELDS["rank"].metadata["lo"]), max(max_rank(s["d_in"], s["hidden"], s["d_out"]), 2)
        key = _seed("rank", s["rank"])
        st.session_state[key] = min(max(st.session_state[key], lo), hi)
        s["rank"] = st.slider(LABELS["rank"], lo, hi, key=key, help=FIELDS["rank"].metadata["help"])
        a_lo, a_hi, a_step = ALPHA_RANGE
        key = _seed("alpha", float(s["alpha"]))
        value = st.session_state[key]
        s["alpha"] = st.slider(LABELS["alpha"], min(a_lo, value), max(a_hi, value), step=a_step, key=key,
                               help=FIELDS["alpha"].metadata["help"])
        s["shift"] = _choice(st, "shift", SHIFT_LABELS)
        s["shift_scale"] = _number(st, "shift_scale")
        if s["shift"] == "low_rank":
            s["shift_rank"] = _number(st, "shift_rank")
    write_url()
    try:
        return _config()
    except ConfigError as e:
        st.error(f"These settings cannot run: {plain(str(e), 400)}")
        return None


# ---- training, cached for all sessions ---------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def _warm_up() -> threading.Thread:
    """Torch's first optimizer step in a process costs about a second of lazy imports, Plotly's first figure a
    few tenths: pay both in the background when the first page opens, not when someone presses Train."""
    def tiny_run() -> None:
        warm_up()
        figures.empty_loss_figure(1, 1).to_json()  # Plotly's validators load lazily too

    thread = threading.Thread(target=tiny_run, name="lora-explorer-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource
def _results() -> OrderedDict:
    """Finished results keyed by config, shared by every session of this server."""
    return OrderedDict()


def cached(config: ExperimentConfig) -> ExperimentResult | None:
    store = _results()
    if config in store:
        store.move_to_end(config)
        return store[config]
    return None


def train(config: ExperimentConfig, status, chart) -> tuple[ExperimentResult, bool]:
    """Run (or fetch) `config`, drawing progress into `status` and the growing loss chart into `chart`.

    Returns (result, came from the cache). A newer script run of this session stops this one: the callback
    returns False as soon as `active_run` names another run.
    """
    hit = cached(config)
    if hit is not None:
        return hit, True
    run_id = uuid.uuid4().hex
    st.session_state["active_run"] = run_id
    history = {p: PhaseHistory() for p in PHASES}
    planned = (config.pretrain_epochs, config.epochs)
    bar = status.progress(0.0, text="starting…")
    drawn = {"at": 0.0, "n": 0}

    def on_progress(p: Progress) -> bool:
        if st.session_state.get("active_run") != run_id:
            return False
        history[p.phase].train_loss.append(p.train_loss)
        history[p.phase].eval_loss.append(p.eval_loss)
        done = sum(len(h.train_loss) for h in history.values())
        bar.progress(min(done / sum(planned), 1.0), text=f"{figures.PHASE_LABELS[p.phase]}: epoch {p.epoch} of "
                     f"{p.epochs}, held-out loss {p.eval_loss:.4g}")
        now = time.perf_counter()
        if now - drawn["at"] >= DRAW_INTERVAL_S or p.epoch == p.epochs:
            drawn["n"] += 1
            chart.plotly_chart(figures.loss_figure(history, planned), key=f"live-{run_id}-{drawn['n']}")
            drawn["at"] = time.perf_counter()
        return True

    result = run_experiment(config, on_progress)
    if st.session_state.get("active_run") == run_id:
        st.session_state["active_run"] = None
    status.empty()
    if result.status != "cancelled":
        store = _results()
        store[config] = result
        while len(store) > CACHE_SIZE:
            store.popitem(last=False)
    return result, False


def record(result: ExperimentResult) -> None:
    """Make `result` the session's last run and add it to the session's runs (once per distinct config)."""
    runs: dict[str, ExperimentResult] = st.session_state.setdefault("runs", {})
    label = next((k for k, r in runs.items() if r.config == result.config), None)
    if label is None:
        label = f"#{len(runs) + 1} r={result.config['rank']} α={result.config['alpha']:g} " \
                f"{SHIFT_LABELS[result.config['shift']]}"
        runs[label] = result
    st.session_state["last_run"] = label


def last_run() -> ExperimentResult | None:
    label = st.session_state.get("last_run")
    return st.session_state.get("runs", {}).get(label)


def runs() -> dict[str, ExperimentResult]:
    return st.session_state.get("runs", {})


def need_run(what: str) -> None:
    """The message a page shows before any run exists."""
    st.info(f"No run yet in this session. Train one on the Playground to see {what}.")
    st.page_link("pages/1_Playground.py", label="Go to the Playground", icon=":material/tune:")


def _config(**changes: Any) -> ExperimentConfig:
    """The config of the current settings with `changes`; raises ConfigError when they cannot run."""
    s = settings()
    return preset(s["preset"], **{**{k: s[k] for k in LABELS}, **changes})


def config_error(**changes: Any) -> str | None:
    """Why the current settings with `changes` cannot run, or None when they can."""
    try:
        _config(**changes)
    except ConfigError as e:
        return str(e)
    return None


def parse_shapes(text: str) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Layer shapes typed as 'd x k' (x, × or *), comma-separated: ({label: (d, k)}, the parts that are not)."""
    shapes, bad = {}, []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d{1,9})\s*[x×X*]\s*(\d{1,9})", part)
        if m and int(m[1]) >= 1 and int(m[2]) >= 1:
            shapes[f"your layer {len(shapes) + 1}"] = (int(m[1]), int(m[2]))
        else:
            bad.append(part)
    return shapes, bad
