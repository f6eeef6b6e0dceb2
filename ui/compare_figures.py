"""The Compare page's figures and table: functions of a SweepResult, no Streamlit.

Members are grouped into lines by method and α (averaged over seeds); full fine-tuning, which has no rank,
is a horizontal line. Losses are held-out losses (mean squared error, or cross-entropy for the digits) on log
axes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lora_core.settings.config import make_config
from lora_core.settings.variants import METHOD_SET_LABELS, delta_kind
from lora_core.sweep import SweepResult, member_name
from lora_core.sweep_table import rows
from lora_core.tasks.registry import TASK_KINDS

from .figures import _finite, _layout
from .training_figures import ACCURACY_AXIS

FLOOR_REACH = {"lora": "2r", "from_weights": "4r"}  # variants.REACH in words, for the adapter kinds with a floor
RANK_AXIS = "rank r (log scale)"


def loss_name(result: SweepResult) -> str:
    """What the sweep's losses are: its task's loss."""
    return TASK_KINDS[result.config["task"]].loss_name


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _by_line(result: SweepResult, value) -> tuple[dict[str, dict[int, float | None]], dict[str, float | None]]:
    """({'LoRA α=1': {rank: mean over seeds of value(member)}}, {'full fine-tuning': mean value})."""
    lines: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    flat: dict[str, list] = defaultdict(list)
    for method, run in zip(result.methods, result.members, strict=True):
        if run.status != "ok":  # a diverged member has no final values to draw
            continue
        if method == "full":
            flat[METHOD_SET_LABELS[method]].append(value(run))
        else:
            placement = f" on {run.config['targets']}" if result.grid.get("targets") else ""
            lines[f"{METHOD_SET_LABELS[method]} α={run.config['alpha']:g}{placement}"][run.config["rank"]].append(
                value(run))
    return ({name: {r: _mean(v) for r, v in sorted(points.items())} for name, points in lines.items()},
            {name: _mean(v) for name, v in flat.items()})


def _ranks(result: SweepResult) -> list[int]:
    """The ranks the members trained at: the grid's, or under a budget each placement's own."""
    ranks = sorted({run.config["rank"] for m, run in zip(result.methods, result.members, strict=True) if m != "full"})
    return ranks or result.grid["ranks"]


def _ranks_axis(fig: go.Figure, result: SweepResult) -> None:
    ranks = _ranks(result)
    fig.update_xaxes(type="log", tickvals=ranks, ticktext=[str(r) for r in ranks])


def _flat_lines(fig: go.Figure, result: SweepResult, flat: dict[str, float | None], dash: str = "dot",
                log: bool = True) -> None:
    """A value without a rank (full fine-tuning, the base model) as a level line across the ranks."""
    ranks = _ranks(result)
    for name, value in flat.items():
        if value is not None:
            fig.add_trace(go.Scatter(x=[min(ranks), max(ranks)], y=_finite([value] * 2) if log else [value] * 2,
                                     mode="lines", name=name, line={"dash": dash, "color": "black", "width": 2}))


def loss_by_rank(result: SweepResult) -> go.Figure:
    """Final merged loss against r per method and α, with each reach's floor and full fine-tuning drawn in."""
    lines, flat = _by_line(result, lambda run: run.losses.get("merged_on_shifted"))
    fig = go.Figure()
    for name, points in lines.items():
        fig.add_trace(go.Scatter(x=list(points), y=_finite(points.values()), mode="lines+markers", name=name))
    floors: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for method, run in zip(result.methods, result.members, strict=True):
        if method != "full" and run.floor is not None:
            kind = delta_kind(make_config(**run.config))
            floors[f"floor: lower bound with {FLOOR_REACH[kind]} directions"][run.config["rank"]].append(run.floor)
    for name, points in floors.items():
        means = {r: _mean(v) for r, v in sorted(points.items())}
        fig.add_trace(go.Scatter(x=list(means), y=_finite(means.values()), mode="lines", name=name,
                                 line={"dash": "dash", "color": "gray"}))
    _flat_lines(fig, result, flat)
    title = ("Final loss against rank, and the best any adapter of that rank could do" if floors else
             "Final loss against rank")  # the digits have no floor: the title promises none
    _layout(fig, title, RANK_AXIS,
            f"merged model's held-out {loss_name(result)} (log scale)", log_y=True)
    _ranks_axis(fig, result)
    return fig


def member_curves(result: SweepResult, names: Sequence[str]) -> go.Figure:
    """The fine-tuning held-out loss per epoch of the chosen members."""
    fig = go.Figure()
    for method, run in zip(result.methods, result.members, strict=True):
        name = member_name(method, run.config)
        if name in names:
            losses = run.history["finetune"].eval_loss
            fig.add_trace(go.Scatter(x=list(range(1, len(losses) + 1)), y=_finite(losses), mode="lines", name=name))
    return _layout(fig, "Fine-tuning, held-out loss per epoch", "fine-tuning epoch",
                   f"held-out {loss_name(result)} (log scale)", log_y=True)


def direction_growth(result: SweepResult, names: Sequence[str], direction: int = 0) -> go.Figure | None:
    """The share of one of the shift's directions (0: the strongest) the chosen members learned, per recorded
    epoch (measure/dynamics.py); None where the sweep follows no direction (the digits, a wide full-rank shift)."""
    fig = go.Figure()
    for method, run in zip(result.methods, result.members, strict=True):
        tuning = run.history["finetune"]
        follows = bool(tuning.modes_learned) and len(tuning.modes_learned[0]) > direction
        if follows and member_name(method, run.config) in names:
            fig.add_trace(go.Scatter(x=tuning.spectra_epochs, y=[row[direction] for row in tuning.modes_learned],
                                     mode="lines", name=member_name(method, run.config)))
    if not fig.data:
        return None
    fig = _layout(fig, f"The shift's direction {direction + 1}: the share each member has learned, per epoch",
                  "fine-tuning epoch", "share learned (uᵢᵀ ΔM vᵢ / σᵢ)")
    return fig.update_yaxes(tickformat=".0%")


def scaling_heatmaps(result: SweepResult) -> go.Figure:
    """Final loss over r × α for LoRA (α/r) and rsLoRA (α/√r) side by side: log10 of the merged loss."""
    panels = {"lora": "LoRA: s = α/r", "rslora": "rsLoRA: s = α/√r"}
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(panels.values()), shared_yaxes=True)
    ranks, alphas = result.grid["ranks"], result.grid["alphas"]
    for col, method in enumerate(panels, start=1):
        cells: dict[tuple[int, float], list] = defaultdict(list)
        for m, run in zip(result.methods, result.members, strict=True):
            if m == method:
                cells[(run.config["rank"], run.config["alpha"])].append(run.losses.get("merged_on_shifted"))
        z = [[_log10(_mean(cells.get((r, a), []))) for a in alphas] for r in ranks]
        fig.add_trace(go.Heatmap(z=z, x=[f"{a:g}" for a in alphas], y=[str(r) for r in ranks],
                                 coloraxis="coloraxis", name=panels[method],
                                 hovertemplate="r=%{y}, α=%{x}: log10 loss %{z:.2f}<extra></extra>"), row=1, col=col)
    fig.update_layout(coloraxis={"colorscale": "Viridis", "colorbar": {"title": "log10 loss"}},
                      title="Final loss over rank × α: α/r against α/√r", margin={"t": 90})
    fig.update_xaxes(title_text="α", type="category")
    fig.update_yaxes(title_text="rank r", type="category", row=1, col=1)
    return fig


def _log10(value: float | None) -> float | None:
    return math.log10(value) if value is not None and value > 0 else None


def similarity_heatmap(entry: dict) -> go.Figure:
    """φ(A1, A2, i, j) of one pair of members (Hu et al. §7.2)."""
    values = entry["values"]
    fig = go.Figure(go.Heatmap(z=values, x=list(range(1, len(values[0]) + 1)), y=list(range(1, len(values) + 1)),
                               zmin=0, zmax=1, colorscale="Viridis", colorbar={"title": "φ"},
                               hovertemplate="i=%{y}, j=%{x}: φ = %{z:.2f}<extra></extra>"))
    _layout(fig, f"Subspace similarity of {entry['layer']}'s A: {entry['a']} vs {entry['b']}",
            f"j: top-j directions of {entry['b']}", f"i: top-i directions of {entry['a']}")
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(dtick=1)
    return fig


def forgetting_figure(result: SweepResult) -> go.Figure:
    """The merged model's loss on the ORIGINAL task against r (the base's own loss there as a reference)."""
    lines, flat = _by_line(result, lambda run: run.losses.get("merged_on_original"))
    fig = go.Figure()
    for name, points in lines.items():
        fig.add_trace(go.Scatter(x=list(points), y=_finite(points.values()), mode="lines+markers", name=name))
    _flat_lines(fig, result, flat)
    base = _mean([run.losses.get("base_on_original") for run in result.members])
    _flat_lines(fig, result, {"base model before fine-tuning": base}, dash="dash")
    _layout(fig, "Forgetting: the merged model on the original task", RANK_AXIS,
            f"held-out {loss_name(result)} on the original task (log scale)", log_y=True)
    _ranks_axis(fig, result)
    return fig


def intruders_figure(result: SweepResult) -> go.Figure:
    """Intruder dimensions (every measured layer together) against r."""
    lines, flat = _by_line(result, lambda run: sum(run.intruders.values()))
    fig = go.Figure()
    for name, points in lines.items():
        fig.add_trace(go.Scatter(x=list(points), y=list(points.values()), mode="lines+markers", name=name))
    _flat_lines(fig, result, flat, log=False)
    _layout(fig, "Intruder dimensions per rank", RANK_AXIS,
            "intruder dimensions, all measured layers (count)")
    _ranks_axis(fig, result)
    return fig


def accuracy_by_rank(result: SweepResult) -> go.Figure:
    """A classification sweep's merged accuracy on the shifted and on the original task against r."""
    fig = go.Figure()
    for key, dash in (("merged_on_shifted", "solid"), ("merged_on_original", "dot")):
        lines, flat = _by_line(result, lambda run, key=key: run.accuracies.get(key))
        where = "shifted" if key == "merged_on_shifted" else "original (forgetting)"
        for name, points in lines.items():
            fig.add_trace(go.Scatter(x=list(points), y=list(points.values()), mode="lines+markers",
                                     name=f"{name}, {where}", line={"dash": dash}))
        _flat_lines(fig, result, {f"{name}, {where}": v for name, v in flat.items()}, dash=dash, log=False)
    _layout(fig, "Held-out accuracy of the merged model against rank", RANK_AXIS, ACCURACY_AXIS)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    _ranks_axis(fig, result)
    return fig


def _budget_members(result: SweepResult) -> list:
    """The adapter members of a budget sweep that finished, one per placement (the first α and seed)."""
    alpha, seed = result.grid["alphas"][0], result.grid["seeds"][0]
    return [run for method, run in zip(result.methods, result.members, strict=True)
            if method != "full" and run.status == "ok" and run.config["alpha"] == alpha and run.config["seed"] == seed]


def budget_figure(result: SweepResult) -> go.Figure:
    """At one parameter budget, each placement at the largest rank that fits it: the merged model's held-out
    loss on the shifted text and on the original one (forgetting), side by side (the LoRA paper's Table 5
    question, asked of this model)."""
    runs = _budget_members(result)
    names = [f"{run.config['targets']}<br>r = {run.config['rank']}, {run.params.lora_trainable:,} params"
             for run in runs]
    fig = go.Figure()
    for key, label in (("merged_on_shifted", "on the shifted text"),
                       ("merged_on_original", "on the original text (forgetting)")):
        fig.add_trace(go.Bar(x=names, y=[run.losses.get(key) for run in runs], name=label,
                             text=[f"{run.losses.get(key):.3f}" for run in runs], textposition="outside"))
    base = _mean([run.losses.get("base_on_shifted") for run in runs])
    if base is not None:
        fig.add_hline(y=base, line_dash="dash", line_color="gray", annotation_text="base model on the shifted text",
                      annotation_position="top left")
    _layout(fig, f"At most {result.grid['budget']:,} trainable parameters: where to put them",
            "placement (target modules), the rank that fits the budget, its parameters",
            f"merged model's held-out {loss_name(result)}")
    low = min((v for t in fig.data for v in t.y if v is not None), default=0)
    return fig.update_layout(barmode="group").update_yaxes(range=[0.9 * low, None])


def budget_caption(result: SweepResult) -> str:
    """The budget chart's finding, in its numbers: which placement did best on the shifted text."""
    runs = _budget_members(result)
    if not runs:
        return "No placement finished."
    best = min(runs, key=lambda run: run.losses["merged_on_shifted"])
    worst = max(runs, key=lambda run: run.losses["merged_on_shifted"])
    return (f"Lowest loss on the shifted text: adapters on {best.config['targets']} at r = {best.config['rank']} "
            f"({best.losses['merged_on_shifted']:.3f}); highest: {worst.config['targets']} at r = "
            f"{worst.config['rank']} ({worst.losses['merged_on_shifted']:.3f}). One seed is one sample: run more "
            "seeds before trusting a small gap.")


def members_table(result: SweepResult) -> pd.DataFrame:
    return pd.DataFrame(rows(result))
