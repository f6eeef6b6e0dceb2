"""Plotly figures and tables the app's pages share: functions of results and configs, no Streamlit.

Every figure has a title, axis titles with units, and named traces, so a test can read its data back
(`fig.to_dict()["data"]`) and a person can read it on a projector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd
import plotly.graph_objects as go

from lora_core.measure.analysis import (
    adam_state_bytes,
    break_even_rank,
    cumulative_energy,
    full_param_count,
    lora_param_count,
)
from lora_core.settings.budget import duration, human_bytes
from lora_core.settings.config import LABELS, SHIFT_LABELS, ExperimentConfig, make_config
from lora_core.settings.results import LOSS_KEYS, PHASES, ExperimentResult, PhaseHistory
from lora_core.settings.variants import delta_kind
from lora_core.tasks.registry import TASK_KINDS

PHASE_LABELS = {"pretrain": "pretraining", "finetune": "fine-tuning"}
PHASE_COLORS = {"pretrain": "#4C6EF5", "finetune": "#F76707"}
LOSS_LABELS = {"base_on_original": "Base model, original data", "base_on_shifted": "Base model, shifted data",
               "adapter_on_shifted": "Adapter, before merging", "merged_on_shifted": "Merged model",
               "merged_on_original": "Merged model, original data (forgetting)"}
LOSS_CARDS = {"base_on_original": "Base · original", "base_on_shifted": "Base · shifted",
              "adapter_on_shifted": "Adapter · shifted", "merged_on_shifted": "Merged · shifted",
              "merged_on_original": "Merged · original"}

def estimate_note(estimate: dict[str, float]) -> str:
    """What the server expected a result to take and how it went ('' when it did not say): '(estimated 4.3 s,
    took 1.10x that)'."""
    if not estimate:
        return ""
    return f" (estimated {duration(estimate['seconds'])}, took {estimate['ratio']:.2f}x that)"


SIDE_BY_SIDE = 3  # a page draws this many layers in columns; more are chosen one at a time


def loss_axis(*tasks: str) -> str:
    """A loss chart's y-axis title: the loss of the runs' task(s) and the scale."""
    names = sorted({TASK_KINDS[task].loss_name for task in tasks})
    if len(names) == 1:
        return f"{names[0]} (log scale)"
    return "held-out loss: " + " or ".join(f"{TASK_KINDS[t].loss_name} ({t} runs)" for t in sorted(set(tasks))) \
        + " (log scale)"


# What ΔW = W_merged − W is, per kind of method (lora_core.settings.variants.delta_kind): the Spectrum page's words.
DELTA_INTRO = {
    "lora": "With LoRA, ΔW = s·B·A has at most r non-zero singular values; the factors give them without forming "
            "ΔW, the merged weights give them from W_merged − W. The two should agree.",
    "from_weights": "PiSSA and OLoRA start B·A from W itself and train on the residual W − s·B₀A₀, so the change "
                    "from the pretrained W is s·(B·A − B₀A₀): at most 2r directions, not r. Both lines measure "
                    "it against the original W, not the residual.",
    "dora": "DoRA merges W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖ per row: besides the rank-≤ r update s·B·A (the "
            "factored line), every row of W is rescaled, so W' − W is no longer of rank ≤ r.",
    "full": "Full fine-tuning trains every weight: ΔW can be any matrix, and there are no factors.",
}
# What the floor is, wherever it is shown (analysis.loss_floor, experiment.floor).
FLOOR_NOTE = ("a lower bound from the number of directions the method can change; with LoRA started at B = 0 it "
              "is reached when the layers are square and invertible")

# The factored line's name: for LoRA it is ΔW itself; the other kinds say what the factors give.
FACTORED_NAME = {"lora": "before merging: from B and A", "from_weights": "before merging: s·(BA − B₀A₀) from factors",
                 "dora": "s·B·A from the factors (without DoRA's row scaling)"}
DELTA_NOTE = {
    "lora": "ΔW after merging has {n} non-zero singular value(s) (r = {r}); the largest {k} agree with the "
            "factored ones to {gap:.1e} relative.",
    "from_weights": "ΔW from the original W has {n} non-zero singular value(s) (at most 2r = {two_r}); they agree "
                    "with those of s·(B·A − B₀A₀) from the factors to {gap:.1e} relative.",
    "dora": "W' − W has {n} non-zero singular values of {most} possible, although s·B·A has at most r = {r}: "
            "the rescaled rows (m / ‖W + s·B·A‖ − 1) · W add the rest.",
    "full": "Full fine-tuning: ΔW has {n} non-zero singular values of {most} possible; there are no factors.",
}

# Real layer shapes (d_in x d_out of one weight matrix) to try on the Parameters page.
EXAMPLE_SHAPES = {
    "BERT-base attention projection": (768, 768),
    "LLaMA-7B attention projection": (4096, 4096),
    "LLaMA-7B MLP up-projection": (4096, 11008),
    "GPT-3 175B attention projection": (12288, 12288),
    "GPT-3 175B MLP up-projection": (12288, 49152),
}

LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "left", "x": 0}  # above the plot
MARGIN = {"t": 90, "b": 50, "l": 60, "r": 20}
# More entries than this would stack rows of legend up over the title: they go in a column on the right instead
LEGEND_ABOVE_MAX = 6
SIDE_LEGEND = {"orientation": "v", "yanchor": "top", "y": 1.0, "xanchor": "left", "x": 1.02}
SIDE_LEGEND_WIDTH = 240  # the right margin that column takes (px)


def legend_layout(fig: go.Figure, margin: dict | None = None) -> dict:
    """The legend and margins for `fig`'s traces: above the plot, or on its right when there are many."""
    entries = sum(trace.showlegend is not False for trace in fig.data)
    if entries > LEGEND_ABOVE_MAX:
        return {"legend": SIDE_LEGEND, "margin": {**(margin or MARGIN), "r": SIDE_LEGEND_WIDTH}}
    return {"legend": LEGEND, "margin": margin or MARGIN}


def _layout(fig: go.Figure, title: str, x: str, y: str, *, log_y: bool = False, log_x: bool = False) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, legend_title_text="", hovermode="x unified",
                      **legend_layout(fig))
    if log_y:
        values = [v for t in fig.data for v in (t.y or ()) if v is not None and v > 0]
        narrow = values and math.log10(max(values) / min(values)) < 3  # Plotly would label every digit
        fig.update_yaxes(type="log", exponentformat="power", dtick="D2" if narrow else None)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def _mark_rank(fig: go.Figure, rank: int, *, log_x: bool) -> None:
    """A dotted vertical line at r. Plotly places annotations on a log axis in log10 units, lines in data units."""
    fig.add_vline(x=rank, line_dash="dot", line_color="gray")
    fig.add_annotation(x=math.log10(rank) if log_x else rank, y=0.02, yref="paper", xanchor="left",
                       yanchor="bottom", showarrow=False, text=f" r = {rank}", font={"color": "gray"})


MAX_POINTS = 1000  # per trace: a chart of 100,000 epochs stays as small and quick to draw as one of 1,000


def _thin(x: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    """Every k-th point, k chosen so that at most about MAX_POINTS remain; the last point always stays."""
    step = max(1, -(-len(x) // MAX_POINTS))
    keep = [*range(0, len(x), step), *([len(x) - 1] if len(x) and (len(x) - 1) % step else [])]
    return [x[i] for i in keep], [y[i] for i in keep]


def _finite(values: Iterable[float]) -> list[float | None]:
    """Non-finite or non-positive values cannot sit on a log axis: leave a gap instead."""
    return [v if v is not None and math.isfinite(v) and v > 0 else None for v in values]


# ---- losses -------------------------------------------------------------------------------------------------

def epoch_positions(history: dict[str, PhaseHistory], epochs: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Each phase's epochs on the shared axis: pretraining 1..P, fine-tuning P+1..P+F (P planned, or done)."""
    done = {p: len(history[p].train_loss) for p in PHASES}
    planned = tuple(epochs) if epochs else (done["pretrain"], done["finetune"])
    offset = {"pretrain": 0, "finetune": planned[0]}
    return {phase: [offset[phase] + i for i in range(1, done[phase] + 1)] for phase in PHASES}


PHASE_NOTE = " fine-tuning on shifted data →"


def mark_phases(fig: go.Figure, epochs: Sequence[int], status: str) -> None:
    """On a chart of both phases (`epochs` = (P, F) planned): the line where fine-tuning starts, the x range, and
    for a diverged run a note saying so. Every subplot gets the line; the notes sit once above them."""
    fig.add_vline(x=epochs[0] + 0.5, line_dash="dash", line_color="gray")
    # Inside the plot, at the foot of the line: above the plot is the legend's band, and there the fine-tuning
    # curve starts high, so the foot is where the note hides nothing.
    fig.add_annotation(x=epochs[0] + 0.5, y=0.0, yref="paper", xanchor="left", yanchor="bottom", showarrow=False,
                       text=PHASE_NOTE, font={"color": "gray"})
    if status == "diverged":
        fig.add_annotation(text="diverged: loss became infinite or NaN", xref="paper", yref="paper", x=0.5, y=0.95,
                           showarrow=False, font={"color": "crimson", "size": 14})
    fig.update_xaxes(range=[0.5, sum(epochs) + 0.5])


def loss_figure(history: dict[str, PhaseHistory], epochs: Sequence[int] | None = None, *,
                status: str = "ok", title: str = "Loss per epoch", y_title: str | None = None) -> go.Figure:
    """Training and held-out loss of both phases on one epoch axis: pretraining 1..P, fine-tuning P+1..P+F.

    `epochs` = (P, F) fixes the x range, so a chart redrawn every epoch grows instead of rescaling.
    """
    planned = tuple(epochs) if epochs else (len(history["pretrain"].train_loss), len(history["finetune"].train_loss))
    fig = go.Figure()
    for phase, x in epoch_positions(history, planned).items():
        h = history[phase]
        for kind, values in (("train", h.train_loss), ("held-out", h.eval_loss)):
            held_out = kind == "held-out"
            xs, ys = _thin(x, _finite(values))
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{PHASE_LABELS[phase]}, {kind}",
                                     line={"color": PHASE_COLORS[phase], "dash": "dot" if held_out else "solid",
                                           "width": 3 if held_out else 1.5}))
    mark_phases(fig, planned, status)
    return _layout(fig, title, "epoch (pretraining on the original task, then fine-tuning on the shifted one)",
                   y_title or loss_axis("linear"), log_y=True)


def overlay_figure(runs: dict[str, ExperimentResult]) -> go.Figure:
    """Held-out loss of several runs, aligned so that epoch 0 is the start of fine-tuning."""
    fig = go.Figure()
    for label, result in runs.items():
        pre = result.history["pretrain"].eval_loss
        fine = result.history["finetune"].eval_loss
        pre_x, pre_y = _thin(range(1 - len(pre), 1), _finite(pre))
        fine_x, fine_y = _thin(range(1, len(fine) + 1), _finite(fine))
        # a gap at 0.5: the task changes between the phases
        fig.add_trace(go.Scatter(x=[*pre_x, 0.5, *fine_x], y=[*pre_y, None, *fine_y], mode="lines", name=label))
    fig.add_vline(x=0.5, line_dash="dash", line_color="gray", annotation_text="fine-tuning →",
                  annotation_position="top right")
    return _layout(fig, "Held-out loss of the selected runs", "epoch (≤ 0: pretraining, > 0: fine-tuning)",
                   loss_axis(*(r.config["task"] for r in runs.values())) if runs else loss_axis("linear"),
                   log_y=True)


def number(value: float | None) -> str:
    """A loss or difference for a card: 3 significant digits, scientific when very small or large."""
    if value is None:
        return "—"
    return f"{value:.2e}" if value and not 1e-2 <= abs(value) < 1e4 else f"{value:.3g}"


# ---- parameters ---------------------------------------------------------------------------------------------

def params_figure(shapes: dict[str, tuple[int, int]], rank: int, r_max: int) -> go.Figure:
    """(d + k) r over r against the constant d k, one colour per layer shape; log-log."""
    fig = go.Figure()
    ranks = sorted({round(2 ** (i / 4)) for i in range(int(4 * math.log2(max(r_max, 1))) + 1)} | {rank})
    named: dict[tuple[int, int], list[str]] = {}  # layers of the same shape share one pair of lines
    for label, shape in shapes.items():
        named.setdefault(shape, []).append(label)
    for i, ((d_in, d_out), labels) in enumerate(named.items()):
        label, color = ", ".join(labels), _COLORS[i % len(_COLORS)]
        fig.add_trace(go.Scatter(x=ranks, y=[lora_param_count(d_in, d_out, r) for r in ranks], mode="lines",
                                 name=f"{label} {d_in}×{d_out}: LoRA (d+k)r", line={"color": color}))
        fig.add_trace(go.Scatter(x=[ranks[0], ranks[-1]], y=[full_param_count(d_in, d_out)] * 2, mode="lines",
                                 name=f"{label} {d_in}×{d_out}: full dk", line={"color": color, "dash": "dash"}))
    _mark_rank(fig, rank, log_x=True)
    fig = _layout(fig, "Trainable parameters per layer: LoRA (d+k)r against full fine-tuning dk",
                  "rank r (log scale)", "trainable parameters (log scale)", log_y=True, log_x=True)
    return fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": 1, "xanchor": "left", "x": 1.02})


def shapes_table(shapes: dict[str, tuple[int, int]], rank: int, dtype: str = "float32") -> pd.DataFrame:
    """One row per layer: sizes, LoRA and full parameter counts, fraction trained, Adam state for each."""
    rows = []
    for label, (d_in, d_out) in shapes.items():
        lora, full = lora_param_count(d_in, d_out, rank), full_param_count(d_in, d_out)
        rows.append({"layer": label, "d (in)": d_in, "k (out)": d_out, f"LoRA params (r={rank})": lora,
                     "full params": full, "fraction trained": f"{lora / full:.3%}",
                     "Adam state, LoRA": human_bytes(adam_state_bytes(lora, dtype)),
                     "Adam state, full": human_bytes(adam_state_bytes(full, dtype)),
                     "break-even rank": f"{break_even_rank(d_in, d_out):,.1f}"})
    return pd.DataFrame(rows)


# ---- spectra ------------------------------------------------------------------------------------------------

def _index(values: Sequence[float]) -> list[int]:
    return list(range(1, len(values) + 1))


def delta_figure(result: ExperimentResult, layer: str) -> go.Figure:
    """ΔW's singular values from the factors (before merging) over those of the merged weights' difference."""
    s = result.spectra[layer]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=_index(s.delta_merged), y=_finite(s.delta_merged), mode="lines+markers",
                             name="after merging: W_merged − W", marker={"size": 5}))
    if s.delta_factored:
        kind = delta_kind(make_config(**result.config))
        fig.add_trace(go.Scatter(x=_index(s.delta_factored), y=_finite(s.delta_factored), mode="markers",
                                 name=FACTORED_NAME[kind], marker={"size": 14, "symbol": "circle-open",
                                                                                  "line": {"width": 3}}))
    return _layout(fig, f"{layer}: singular values of ΔW", "index i (largest first)", "singular value σᵢ (log scale)",
                   log_y=True)


def weight_figure(result: ExperimentResult, layer: str) -> go.Figure:
    s = result.spectra[layer]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=_index(s.weight_before), y=_finite(s.weight_before), mode="lines",
                             name="before merging (pretrained W)"))
    fig.add_trace(go.Scatter(x=_index(s.weight_after), y=_finite(s.weight_after), mode="lines",
                             name="after merging (W + ΔW)", line={"dash": "dash"}))
    return _layout(fig, f"{layer}: singular values of the weight", "index i (largest first)", "singular value σᵢ")


def energy_figure(curves: dict[str, Sequence[float]], rank: int | None = None) -> go.Figure:
    """Cumulative energy of several spectra (e.g. each layer's ΔW and the shift), k on the x axis."""
    fig = go.Figure()
    for label, values in curves.items():
        fig.add_trace(go.Scatter(x=_index(values), y=cumulative_energy(values), mode="lines+markers", name=label,
                                 marker={"size": 4}))
    if rank:
        _mark_rank(fig, rank, log_x=True)
    longest = max((len(v) for v in curves.values()), default=1)
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    fig.update_xaxes(type="log", range=[-0.05, math.log10(max(longest, 2)) + 0.05])  # log10 units: k from 1
    return _layout(fig, "Cumulative energy: share of ‖M‖²_F in the first k directions",
                   "number of directions k (log scale)", "share of squared Frobenius norm")


def shift_figure(values: Sequence[float], config: ExperimentConfig) -> go.Figure:
    label = SHIFT_LABELS[config.shift]
    fig = go.Figure(go.Bar(x=_index(values), y=list(values), name=f"{label} shift Δθ"))
    return _layout(fig, f"What the {label} shift needs: singular values of Δθ ({config.d_in}×{config.d_out})",
                   "index i (largest first)", "singular value σᵢ")


# ---- runs ---------------------------------------------------------------------------------------------------

RUN_SETTINGS = tuple(LABELS)  # every Playground setting, in the Playground's order


def runs_table(runs: dict[str, ExperimentResult]) -> pd.DataFrame:
    """One row per run: its settings, final losses (and accuracies for the digits), merge check, time and device."""
    rows = []
    for label, r in runs.items():
        row = {"run": label, "status": r.status}
        row.update({k: r.config[k] for k in RUN_SETTINGS})
        row.update({k: r.losses.get(k) for k in LOSS_KEYS})
        row.update({f"accuracy_{k}": v for k, v in r.accuracies.items()})  # the digits task's (the sweep CSV's names)
        row["merge max |diff|"] = r.merge_max_abs_diff
        row["time (s)"] = round(sum(r.timings.values()), 3)  # the phases' (pretrain, finetune, analysis)
        row["device"] = r.device
        rows.append(row)
    return pd.DataFrame(rows)


_COLORS = ("#4C6EF5", "#F76707", "#2B8A3E", "#C2255C", "#7048E8", "#1098AD", "#E67700")
