"""A run's training chart (loss per epoch, and held-out accuracy below it for a classification task) and the
digits' sample grid (before and after the shift, with both models' predictions). Functions of results, no
Streamlit."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lora_core.settings.config import DIGIT_SHIFT_LABELS
from lora_core.settings.results import PHASES, ExperimentResult, PhaseHistory
from lora_core.tasks.digits import SIDE
from lora_core.tasks.registry import TASK_KINDS

from . import figures

ACCURACY_AXIS = "held-out accuracy (share right)"
# A classifying task's epoch axis, by task
EPOCH_AXIS = {"digits": "epoch (pretraining on the original digits, then fine-tuning on the shifted ones)",
              "text": "epoch (pretraining on the documentation, then fine-tuning on the shift's text)"}
# What a classifying task's shifted data is called in a sentence, by task
SHIFTED_DATA = {"digits": "shifted digits", "text": "the shift's text"}
# What a classifying task's accuracy counts, by task
ACCURACY_HELP = {"digits": "share of the held-out digits whose predicted class is right",
                 "text": "share of the held-out characters the model predicts right (its most likely next one)"}


def training_figure(history: dict[str, PhaseHistory], epochs: Sequence[int], task: str, *,
                    status: str = "ok") -> go.Figure:
    """The live and final chart of a run: loss per epoch, and below it the held-out accuracy for a
    classification task."""
    loss = figures.loss_figure(history, epochs, status=status, y_title=figures.loss_axis(task))
    if not TASK_KINDS[task].classifies:
        return loss
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.07)
    for trace in loss.data:
        fig.add_trace(trace, row=1, col=1)
    for phase, x in figures.epoch_positions(history, epochs).items():
        values = history[phase].eval_accuracy
        fig.add_trace(go.Scatter(x=x[:len(values)], y=values, mode="lines+markers", marker={"size": 4},
                                 name=f"{figures.PHASE_LABELS[phase]}, held-out accuracy",
                                 line={"color": figures.PHASE_COLORS[phase], "width": 2}), row=2, col=1)
    fig.update_layout(title="Loss and accuracy per epoch", legend_title_text="", hovermode="x unified",
                      legend=figures.LEGEND, margin=figures.MARGIN, height=560)
    figures.mark_phases(fig, epochs, status)
    fig.update_xaxes(title_text=EPOCH_AXIS.get(task, "epoch"), row=2, col=1)
    fig.update_yaxes(title_text=figures.loss_axis(task), type="log", exponentformat="power", row=1, col=1)
    fig.update_yaxes(title_text=ACCURACY_AXIS, range=[0, 1.02], tickformat=".0%", row=2, col=1)
    return fig


@functools.lru_cache(maxsize=64)
def empty_figure(pretrain_epochs: int, epochs: int, task: str) -> go.Figure:
    """The chart before any epoch: its axes and phases, waiting for Train. Built once per shape and shared, read
    only (building it was 58 % of a Playground page's run before Train, about 30 ms of the server's Python: twenty
    sessions opening at once held the health check behind them)."""
    fig = training_figure({p: PhaseHistory() for p in PHASES}, (pretrain_epochs, epochs), task)
    return fig.update_yaxes(range=[-3, 2], row=1 if TASK_KINDS[task].classifies else None)  # log10 units


def result_figure(result: ExperimentResult) -> go.Figure:
    """`training_figure` of a finished (or stopped) run."""
    cfg = result.config
    return training_figure(result.history, (cfg["pretrain_epochs"], cfg["epochs"]), cfg["task"],
                           status=result.status)


def percent(value: float | None) -> str:
    """An accuracy for a card: '97.3 %', or a dash when the run stopped before it."""
    return "—" if value is None else f"{100 * value:.1f} %"


RIGHT, WRONG = "#2B8A3E", "#C92A2A"  # a prediction's colour in the sample grid


def _prediction(name: str, predicted: int, label: int) -> str:
    return f"<span style='color:{RIGHT if predicted == label else WRONG}'>{name} {predicted}</span>"


def samples_figure(result: ExperimentResult) -> go.Figure:
    """Held-out digits: the original image above, the shifted one below; above each column the true class and the
    classes the base model and the fine-tuned (merged) model predict for the shifted image (green right, red
    wrong)."""
    samples = result.samples
    shift = DIGIT_SHIFT_LABELS[result.config["digits_shift"]]
    titles = [f"<b>{s['label']}</b><br>{_prediction('base', s['base'], s['label'])}<br>"
              f"{_prediction('tuned', s['adapted'], s['label'])}" for s in samples]
    fig = make_subplots(rows=2, cols=len(samples), horizontal_spacing=0.01, vertical_spacing=0.04,
                        subplot_titles=[*titles, *[""] * len(samples)])
    for column, sample in enumerate(samples, 1):
        for row, key in ((1, "original"), (2, "shifted")):
            pixels = [sample[key][i * SIDE:(i + 1) * SIDE] for i in range(SIDE)]
            fig.add_trace(go.Heatmap(z=pixels, zmin=0, zmax=1, colorscale="gray_r", showscale=False,
                                     name=f"{key} {sample['label']}",
                                     hovertemplate="row %{y}, column %{x}: %{z:.2f}<extra></extra>"),
                          row=row, col=column)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_annotations(font={"size": 11})
    return fig.update_layout(title=f"Held-out digits: original (top) and {shift} (bottom)", height=330,
                             margin={"t": 110, "b": 10, "l": 10, "r": 10})


def samples_caption(result: ExperimentResult) -> str:
    """What the sample grid shows, with its counts."""
    samples, shift = result.samples, DIGIT_SHIFT_LABELS[result.config["digits_shift"]]
    before = sum(s["base"] == s["label"] for s in samples)
    after = sum(s["adapted"] == s["label"] for s in samples)
    return (f"Above each digit: its class, then the class the base model and the fine-tuned (merged) model predict "
            f"for the {shift} image, green when right, red when wrong. Of these {len(samples)}, the base gets "
            f"{before} right and the fine-tuned model {after}.")
